#include "tm/bank.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "sqlite/sqlite_rm.h"

namespace xtm::test {

Bank::Bank(const std::string& pg_conninfo, const std::string& dir)
    : pg_(pg_conninfo), sqlite_(dir + "/ledger.db"), log_dir_(dir + "/log"), dir_(dir) {
  std::filesystem::create_directories(log_dir_);
  PGconn* c = ConnectOrDie(pg_);
  Exec(c, "CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))");
  Exec(c, "CREATE TABLE IF NOT EXISTS transfers (id bigint PRIMARY KEY)");
  Exec(c, "INSERT INTO accounts SELECT g, " + std::to_string(kOpening) + " FROM generate_series(1, " +
              std::to_string(kAccounts) + ") g ON CONFLICT DO NOTHING");
  PQfinish(c);
  sqlite3* db = nullptr;
  sqlite3_open(sqlite_.c_str(), &db);
  std::string sql = "PRAGMA journal_mode = WAL;"
                    "CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));"
                    "CREATE TABLE IF NOT EXISTS transfers (id INTEGER PRIMARY KEY);"
                    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < " + std::to_string(kAccounts) +
                    ") INSERT OR IGNORE INTO accounts SELECT i, " + std::to_string(kOpening) + " FROM s;";
  EXPECT_EQ(SQLITE_OK, sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr)) << sqlite3_errmsg(db);
  sqlite3_close(db);
}

tm::TmConfig Bank::Config(int timeout_s) const {
  tm::TmConfig cfg;
  cfg.log_dir = log_dir_;
  cfg.node_name = "test";
  cfg.timeout_s = timeout_s;
  cfg.commit_retry_s = 5;
  cfg.log_level = "warn";
  tm::RmSpec pg;
  pg.name = "bank";
  pg.type = tm::RmSpec::Type::kPostgres;
  pg.conninfo = pg_;
  cfg.rms.push_back(pg);
  tm::RmSpec sq;
  sq.name = "ledger";
  sq.type = tm::RmSpec::Type::kSqlite;
  sq.path = sqlite_;
  sq.busy_timeout_ms = 10000;
  cfg.rms.push_back(sq);
  return cfg;
}

std::string Bank::WriteConfigFile(int timeout_s, const std::string& tm_extra) const {
  const std::string path = dir_ + "/xatm.conf";
  std::ofstream f(path);
  f << "[tm]\nlog_dir = " << log_dir_ << "\nnode_name = test\ntimeout_s = " << timeout_s
    << "\ncommit_retry_s = 5\nlog_level = warn\n" << tm_extra << "\n"
    << "[rm.bank]\ntype = postgresql\nconninfo = " << pg_ << "\n\n"
    << "[rm.ledger]\ntype = sqlite\npath = " << sqlite_ << "\nbusy_timeout_ms = 10000\n";
  return path;
}

std::string ReplaceEveryBranchPrepared(std::string text, const std::string& instead) {
  const size_t at = text.find(kEveryBranchPrepared);
  EXPECT_NE(std::string::npos, at) << "no \"" << kEveryBranchPrepared << "\" in\n" << text;
  if (at != std::string::npos) text.replace(at, std::string(kEveryBranchPrepared).size(), instead);
  return text;
}

long Bank::PgSum() {
  PGconn* c = ConnectOrDie(pg_);
  long v = std::stol(Exec(c, "SELECT coalesce(sum(balance), 0) FROM accounts"));
  PQfinish(c);
  return v;
}

namespace {
std::string SqliteOne(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_busy_timeout(db, 10000);
  sqlite3_stmt* st = nullptr;
  std::string v;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    v = t ? reinterpret_cast<const char*>(t) : "";
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}
}  // namespace

long Bank::SqliteSum() { return std::stol(SqliteOne(sqlite_, "SELECT coalesce(sum(balance), 0) FROM accounts")); }

std::set<long> Bank::PgTransfers() {
  PGconn* c = ConnectOrDie(pg_);
  PGresult* r = PQexec(c, "SELECT id FROM transfers");
  std::set<long> s;
  for (int i = 0; i < PQntuples(r); ++i) s.insert(std::stol(PQgetvalue(r, i, 0)));
  PQclear(r);
  PQfinish(c);
  return s;
}

std::set<long> Bank::SqliteTransfers() {
  sqlite3* db = nullptr;
  sqlite3_open(sqlite_.c_str(), &db);
  sqlite3_busy_timeout(db, 10000);
  sqlite3_stmt* st = nullptr;
  std::set<long> s;
  sqlite3_prepare_v2(db, "SELECT id FROM transfers", -1, &st, nullptr);
  while (sqlite3_step(st) == SQLITE_ROW) s.insert(sqlite3_column_int64(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return s;
}

int Bank::PgPrepared() {
  PGconn* c = ConnectOrDie(pg_);
  int n = std::stoi(Exec(c, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"));
  PQfinish(c);
  return n;
}

int SqlitePreparedIn(const std::string& path) {
  // Records whose marker is in the main database are committed branches whose
  // sidecar delete is still pending: not in doubt.
  const std::string side = sqlite::SidecarPath(path);
  if (!std::filesystem::exists(side)) return 0;
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_busy_timeout(db, 10000);
  std::string attach = "ATTACH '" + side + "' AS side";
  sqlite3_exec(db, attach.c_str(), nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  int n = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM side.prepared p WHERE NOT EXISTS "
                             "(SELECT 1 FROM main.xatm_marker m WHERE m.token = p.token)",
                         -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    n = sqlite3_column_int(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

int Bank::SqlitePrepared() { return SqlitePreparedIn(sqlite_); }

bool TransferStatements(PGconn* pg, sqlite3* db, long id, int from, int to, int amount) {
  const std::string a = std::to_string(amount);
  PGresult* r = PQexec(pg, ("UPDATE accounts SET balance = balance - " + a + " WHERE id = " + std::to_string(from)).c_str());
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!ok) return false;
  r = PQexec(pg, ("INSERT INTO transfers VALUES (" + std::to_string(id) + ")").c_str());
  ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!ok) return false;
  std::string sql = "UPDATE accounts SET balance = balance + " + a + " WHERE id = " + std::to_string(to) +
                    "; INSERT INTO transfers VALUES (" + std::to_string(id) + ")";
  return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
}

}  // namespace xtm::test
