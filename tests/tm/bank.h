// A two-database bank for the TM tests: accounts and a transfer journal in a
// PostgreSQL database and in a SQLite file, and a TM configured for both.
#pragma once

#include <libpq-fe.h>
#include <sqlite3.h>

#include <set>
#include <string>

#include "core/config.h"
#include "support/pg_cluster.h"
#include "support/temp_dir.h"

namespace xtm::test {

constexpr int kAccounts = 10;
constexpr int kOpening = 1000;  // per account, on each side

// For tests of the classic protocol (every branch prepared, the decision a
// record in the log): by default a SQLite branch commits last, holding the
// decision, and the log gets no commit record.
inline constexpr char kEveryBranchPrepared[] = "last_resource_commit = false\n";
// A configuration's text with its kEveryBranchPrepared line replaced by
// instead ("": the default settings).
std::string ReplaceEveryBranchPrepared(std::string text, const std::string& instead);

class Bank {
 public:
  // pg_conninfo: the database to use (created empty by the caller).
  Bank(const std::string& pg_conninfo, const std::string& dir);
  // A configuration with [rm.bank] (PostgreSQL) and [rm.ledger] (SQLite).
  tm::TmConfig Config(int timeout_s = 60) const;
  // Writes Config() as an INI file and returns its path; tm_extra: more
  // lines for [tm] (e.g. kEveryBranchPrepared).
  std::string WriteConfigFile(int timeout_s = 60, const std::string& tm_extra = "") const;

  long PgSum();
  long SqliteSum();
  std::set<long> PgTransfers();
  std::set<long> SqliteTransfers();
  int PgPrepared();      // our database's prepared transactions
  int SqlitePrepared();  // records in the sidecar

  const std::string& pg() const { return pg_; }
  const std::string& sqlite_path() const { return sqlite_; }
  const std::string& log_dir() const { return log_dir_; }

 private:
  std::string pg_, sqlite_, log_dir_, dir_;
};

// Branches left prepared in the SQLite RM's sidecar of database `path` (not
// those committed whose sidecar record is still to be deleted).
int SqlitePreparedIn(const std::string& path);

// Moves amount from PostgreSQL account `from` to SQLite account `to` and
// records transfer `id` on both sides, inside the global transaction of the
// given PGconn/sqlite3 handles. false if a statement failed.
bool TransferStatements(PGconn* pg, sqlite3* db, long id, int from, int to, int amount);

}  // namespace xtm::test
