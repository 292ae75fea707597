// xatmd: the standalone transaction manager server. main() parses the
// command line and waits for SIGTERM; the server is server/server.cc.
#include <signal.h>

#include <boost/program_options.hpp>
#include <iostream>

#include "core/config.h"
#include "server/server.h"
#include "util/version.h"

namespace po = boost::program_options;

namespace {

const char kUsage[] = R"(xatmd - the xatm transaction manager server, shared by many application processes

usage: xatmd --config FILE [--check-config]

  -c, --config FILE   the configuration: [tm] server (where to listen), [tm] log_dir (the
                      decision log this server owns), [server] options, and the [rm.NAME]
                      sections it uses to resolve the transactions of clients that die
  --check-config      check the configuration and exit (0: usable)
  -h, --help          this text;  --version  the version

Runs in the foreground and logs to stderr; SIGTERM or SIGINT stops it cleanly.
Applications use it by naming the same address in their own [tm] server.

Active/passive: with [tm] log_store = postgresql, two or more xatmd with the same
node_name, each with its own [server] listen among [tm] server = A,B: one leads;
the others stand by (not listening) and take over within lease_s of its death.
Exit codes: 0 stopped, 1 failed, 2 bad configuration, 5 the log is owned by another
process, 6 another server took the node over (restart it to stand by again).
)";

}  // namespace

int main(int argc, char** argv) {
  std::string config;
  bool check = false;
  po::options_description desc;
  desc.add_options()("config,c", po::value(&config))("check-config", po::bool_switch(&check))("help,h", "")("version", "");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "xatmd: " << e.what() << "\n(xatmd --help for usage)\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << kUsage << "\n" << xtm::tm::ConfigKeysHelp();
    return 0;
  }
  if (vm.count("version")) {
    std::cout << "xatmd " << xtm::VersionWithCommit() << "\n";
    return 0;
  }
  if (config.empty()) {
    std::cerr << "xatmd: --config FILE is required\n(xatmd --help for usage)\n";
    return 2;
  }
  xtm::tm::TmConfig cfg;
  xtm::Status s = xtm::tm::LoadConfig(config, &cfg);
  if (s.ok()) s = xtm::server::CheckServerConfig(cfg);
  if (!s.ok()) {
    std::cerr << "xatmd: " << s.message() << "\n";
    return 2;
  }
  if (check) {
    std::cout << "xatmd: " << config << " is usable: listen on " << xtm::server::ListenAddress(cfg) << ", "
              << (cfg.log_store == xtm::tm::TmConfig::LogStore::kPostgres ? std::string("decisions in PostgreSQL")
                                                                          : "log in " + cfg.log_dir)
              << ", "
              << cfg.rms.size() << " resource manager(s)\n";
    return 0;
  }
  // Every thread inherits this mask; the signals are taken by sigwait below.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<xtm::server::Server> server;
  const bool shared = cfg.log_store == xtm::tm::TmConfig::LogStore::kPostgres;
  const timespec second{1, 0};
  for (bool said = false;;) {
    s = xtm::server::Server::Start(cfg, &server);
    if (s.ok()) break;
    // On a postgresql store, another xatmd holding the node leads: this one
    // stands by and takes over once that one's lease runs out.
    if (!shared || !s.IsBusy()) {
      std::cerr << "xatmd: " << s.message() << "\n";
      return s.IsBusy() ? 5 : s.IsInvalidArgument() ? 2 : 1;
    }
    if (!said) std::cerr << "xatmd: standing by: " << s.message() << "\n";
    said = true;
    if (sigtimedwait(&set, nullptr, &second) > 0) return 0;
  }
  for (;;) {
    if (sigtimedwait(&set, nullptr, &second) > 0) break;
    if (std::string why = server->LostLead(); !why.empty()) {
      std::cerr << "xatmd: another server took the node over: " << why << "\n";
      server->Stop();
      return 6;
    }
  }
  server->Stop();
  return 0;
}
