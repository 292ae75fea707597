#include "mysql/three_banks.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "tm/bank.h"

namespace xtm::test {
namespace {

std::atomic<int> g_banks{0};

std::string SqliteOne(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_stmt* st = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
      sqlite3_column_text(st, 0)) {
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

}  // namespace

const char* RmName(Side s) {
  switch (s) {
    case Side::kPg: return "bank";
    case Side::kMysql: return "shop";
    case Side::kSqlite: return "ledger";
  }
  return "?";
}

ThreeBanks::ThreeBanks(const std::string& dir, const std::string& mysql_socket)
    : dir_(dir), sqlite_(dir + "/ledger.db"), log_dir_(dir + "/log") {
  std::filesystem::create_directories(log_dir_);
  const std::string n = std::to_string(kAccounts), o = std::to_string(kOpening);
  PGconn* c = ConnectOrDie(pg_.conninfo());
  test::Exec(c, "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))");
  test::Exec(c, "CREATE TABLE transfers (id bigint PRIMARY KEY)");
  test::Exec(c, "INSERT INTO accounts SELECT g, " + o + " FROM generate_series(1, " + n + ") g");
  PQfinish(c);

  socket_ = mysql_socket.empty() ? Mysql().socket : mysql_socket;
  my_db_ = "xatm_b" + std::to_string(getpid()) + "_" + std::to_string(g_banks++);
  MYSQL* my = MysqlConnectOrDie(socket_);
  MysqlExec(my, "CREATE DATABASE " + my_db_);
  MysqlExec(my, "CREATE TABLE " + my_db_ +
                    ".accounts (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0)) ENGINE=InnoDB");
  MysqlExec(my, "CREATE TABLE " + my_db_ + ".transfers (id bigint PRIMARY KEY) ENGINE=InnoDB");
  std::string rows;
  for (int i = 1; i <= kAccounts; ++i) rows += (i > 1 ? ", (" : "(") + std::to_string(i) + ", " + o + ")";
  MysqlExec(my, "INSERT INTO " + my_db_ + ".accounts VALUES " + rows);
  mysql_close(my);

  sqlite3* db = nullptr;
  sqlite3_open(sqlite_.c_str(), &db);
  const std::string sql = "PRAGMA journal_mode = WAL;"
                          "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));"
                          "CREATE TABLE transfers (id INTEGER PRIMARY KEY);"
                          "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < " + n +
                          ") INSERT INTO accounts SELECT i, " + o + " FROM s;";
  EXPECT_EQ(SQLITE_OK, sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr)) << sqlite3_errmsg(db);
  sqlite3_close(db);
}

ThreeBanks::~ThreeBanks() {
  // Prepared branches hold locks DROP DATABASE would wait for.
  MYSQL* my = MysqlConnectOrDie(socket_);
  MysqlRollbackEveryPrepared(my);
  mysql_query(my, ("DROP DATABASE IF EXISTS " + my_db_).c_str());
  mysql_close(my);
}

std::string ThreeBanks::WriteConfig(const std::string& tm_extra, const std::string& file) const {
  const std::string path = dir_ + "/" + file;
  std::ofstream f(path);
  f << "[tm]\nlog_dir = " << log_dir_ << "\nnode_name = test\ncommit_retry_s = 5\nlog_level = warn\n" << tm_extra
    << "\n[rm.bank]\ntype = postgresql\nconninfo = " << pg_.conninfo() << "\n\n"
    << "[rm.shop]\ntype = mysql\n"
    << (mysql_port_ ? "host = 127.0.0.1\nport = " + std::to_string(mysql_port_) : "socket = " + socket_)
    << "\nuser = root\ndatabase = " << my_db_ << "\n\n"
    << "[rm.ledger]\ntype = sqlite\npath = " << sqlite_ << "\nbusy_timeout_ms = 10000\n";
  return path;
}

bool ThreeBanks::Exec(xatm_tx* tx, Side s, const std::string& sql) {
  switch (s) {
    case Side::kPg: {
      PGconn* c = xatm_pgconn(tx, RmName(s));
      if (c == nullptr) return false;
      PGresult* r = PQexec(c, sql.c_str());
      const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
      PQclear(r);
      return ok;
    }
    case Side::kMysql: {
      MYSQL* my = xatm_mysql(tx, RmName(s));
      if (my == nullptr || mysql_real_query(my, sql.data(), sql.size()) != 0) return false;
      if (MYSQL_RES* res = mysql_store_result(my)) mysql_free_result(res);
      return true;
    }
    case Side::kSqlite: {
      sqlite3* db = xatm_sqlite(tx, RmName(s));
      return db && sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
    }
  }
  return false;
}

bool ThreeBanks::Transfer(xatm_tx* tx, Side a, Side b, long id, int from, int to, int amount) {
  const std::string ids = std::to_string(id);
  return Exec(tx, a, "UPDATE accounts SET balance = balance - " + std::to_string(amount) +
                         " WHERE id = " + std::to_string(from)) &&
         Exec(tx, a, "INSERT INTO transfers VALUES (" + ids + ")") &&
         Exec(tx, b, "UPDATE accounts SET balance = balance + " + std::to_string(amount) +
                         " WHERE id = " + std::to_string(to)) &&
         Exec(tx, b, "INSERT INTO transfers VALUES (" + ids + ")");
}

long ThreeBanks::Sum(Side s) const {
  const std::string sql = "SELECT coalesce(sum(balance), 0) FROM accounts";
  if (s == Side::kPg) {
    PGconn* c = ConnectOrDie(pg_.conninfo());
    const long v = std::stol(test::Exec(c, sql));
    PQfinish(c);
    return v;
  }
  if (s == Side::kMysql) {
    MYSQL* my = MysqlConnectOrDie(socket_, my_db_);
    const long v = std::stol(MysqlExec(my, sql));
    mysql_close(my);
    return v;
  }
  return std::stol(SqliteOne(sqlite_, sql));
}

std::set<long> ThreeBanks::Transfers(Side s) const {
  std::set<long> out;
  if (s == Side::kPg) {
    PGconn* c = ConnectOrDie(pg_.conninfo());
    PGresult* r = PQexec(c, "SELECT id FROM transfers");
    for (int i = 0; i < PQntuples(r); ++i) out.insert(std::stol(PQgetvalue(r, i, 0)));
    PQclear(r);
    PQfinish(c);
  } else if (s == Side::kMysql) {
    MYSQL* my = MysqlConnectOrDie(socket_, my_db_);
    if (mysql_query(my, "SELECT id FROM transfers") == 0) {
      MYSQL_RES* res = mysql_store_result(my);
      while (MYSQL_ROW row = mysql_fetch_row(res)) out.insert(std::stol(row[0]));
      mysql_free_result(res);
    }
    mysql_close(my);
  } else {
    sqlite3* db = nullptr;
    sqlite3_open(sqlite_.c_str(), &db);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT id FROM transfers", -1, &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW) out.insert(sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  return out;
}

int ThreeBanks::Prepared(Side s) const {
  if (s == Side::kPg) {
    PGconn* c = ConnectOrDie(pg_.conninfo());
    const int n = std::stoi(test::Exec(c, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"));
    PQfinish(c);
    return n;
  }
  if (s == Side::kMysql) return MysqlPrepared(socket_);
  return SqlitePreparedIn(sqlite_);
}

}  // namespace xtm::test
