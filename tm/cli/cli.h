// xatm, the admin tool: find, explain and resolve in-doubt transactions.
// main() only forwards to Run(); each subcommand is a small function in
// commands.cc, so the tool is tested like the rest of the library.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace xtm::tm {
class TransactionManager;
}

namespace xtm::cli {

// Exit codes (documented in docs/operations.md and `xatm --help`).
enum ExitCode {
  kExitOk = 0,
  kExitInDoubt = 1,         // something is in doubt (list, health, recover left work)
  kExitBadInput = 2,        // usage, malformed gtrid, configuration, unknown gtrid
  kExitCorruptLog = 3,      // the decision log is corrupt
  kExitRmUnreachable = 4,   // a resource manager could not be reached
  kExitLogBusy = 5,         // another process owns the decision log
  kExitFailed = 6,          // an action was refused or could not be completed
};

int Run(int argc, char** argv, std::ostream& out, std::ostream& err);
// xatmd's side of `xatm --server`: the command line (without the program
// name) run against the server's own TM.
int RunOnServer(const std::vector<std::string>& args, tm::TransactionManager* server_tm, std::ostream& out,
                std::ostream& err);

}  // namespace xtm::cli
