// The example programs run against a real PostgreSQL and SQLite file and do
// what the README says they do.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "support/mysql_server.h"
#include "support/pg_cluster.h"
#include "support/temp_dir.h"

namespace xtm::test {
namespace {

// Runs a command, capturing stdout; returns its exit status.
int RunCommand(const std::string& cmd, std::string* out) {
  out->clear();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out->append(buf, n);
  int st = ::pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class ExamplesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PGconn* c = ConnectOrDie(db_.conninfo());
    Exec(c, Slurp(std::string(XATM_SOURCE_DIR) + "/examples/bank_pg.sql"));
    PQfinish(c);
    sqlite3* s = nullptr;
    sqlite3_open((dir_ / "ledger.db").c_str(), &s);
    ASSERT_EQ(SQLITE_OK, sqlite3_exec(s, Slurp(std::string(XATM_SOURCE_DIR) + "/examples/bank_sqlite.sql").c_str(),
                                      nullptr, nullptr, nullptr));
    sqlite3_close(s);
    std::filesystem::create_directory(dir_ / "log");
    std::ofstream conf(dir_ / "xatm.conf");
    conf << "[tm]\nlog_dir = " << (dir_ / "log") << "\nlog_level = warn\n\n[rm.bank]\ntype = postgresql\nconninfo = "
         << db_.conninfo() << "\n\n[rm.ledger]\ntype = sqlite\npath = " << (dir_ / "ledger.db") << "\n";
  }
  std::string Run(const std::string& program, const std::string& args = "") {
    std::string out;
    EXPECT_EQ(0, RunCommand(std::string(XATM_EXAMPLES_DIR) + "/" + program + " " + args, &out)) << out;
    return out;
  }
  ScratchDb db_;
  TempDir dir_;
};

TEST_F(ExamplesTest, PgsqlSwitchPreparesRecoversAndCommits) {
  std::string out = Run("pgsql_switch", "'" + db_.conninfo() + "'");
  EXPECT_NE(std::string::npos, out.find("xa_prepare")) << out;
  EXPECT_NE(std::string::npos, out.find("row 1: written in a branch")) << out;
}

TEST_F(ExamplesTest, TransferCommitsAndRollsBackAcrossBoth) {
  std::string out = Run("transfer", dir_ / "xatm.conf");
  EXPECT_NE(std::string::npos, out.find("every outcome as expected")) << out;
  EXPECT_NE(std::string::npos, out.find("CHECK fails in PostgreSQL")) << out;
  PGconn* c = ConnectOrDie(db_.conninfo());
  EXPECT_EQ("100", Exec(c, "SELECT balance FROM accounts WHERE name = 'alice'"));
  EXPECT_EQ("0", Exec(c, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"));
  PQfinish(c);
}

TEST_F(ExamplesTest, TransferInCppCommitsAndRollsBackAcrossBoth) {
  std::string out = Run("transfer_cpp", dir_ / "xatm.conf");
  EXPECT_NE(std::string::npos, out.find("every outcome as expected")) << out;
  EXPECT_NE(std::string::npos, out.find("CHECK fails in SQLite")) << out;
  PGconn* c = ConnectOrDie(db_.conninfo());
  EXPECT_EQ("100", Exec(c, "SELECT balance FROM accounts WHERE name = 'alice'"));
  EXPECT_EQ("0", Exec(c, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"));
  PQfinish(c);
}

TEST_F(ExamplesTest, TxTransferUsesTheXOpenTxInterface) {
  std::string out;
  ASSERT_EQ(0, RunCommand("XATM_CONFIG='" + (dir_ / "xatm.conf") + "' " + XATM_EXAMPLES_DIR + "/tx_transfer", &out))
      << out;
  EXPECT_NE(std::string::npos, out.find("every outcome as expected")) << out;
  EXPECT_NE(std::string::npos, out.find("TX_ROLLBACK")) << out;
  PGconn* c = ConnectOrDie(db_.conninfo());
  EXPECT_EQ("100", Exec(c, "SELECT balance FROM accounts WHERE name = 'alice'"));
  EXPECT_EQ("0", Exec(c, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"));
  PQfinish(c);
}

TEST_F(ExamplesTest, TravelBookingBooksBothOrNeither) {
  std::string out = Run("travel_booking", dir_ / "xatm.conf");
  EXPECT_NE(std::string::npos, out.find("every outcome as expected")) << out;
  PGconn* c = ConnectOrDie(db_.conninfo());
  EXPECT_EQ("1", Exec(c, "SELECT seats_left FROM flights WHERE flight = 'XA101'"));  // one seat sold, not two
  EXPECT_EQ("1", Exec(c, "SELECT count(*) FROM tickets"));
  PQfinish(c);
}

TEST_F(ExamplesTest, RecoverListsNothingAfterCleanRuns) {
  Run("transfer", dir_ / "xatm.conf");
  std::string out = Run("recover", dir_ / "xatm.conf");
  EXPECT_NE(std::string::npos, out.find("0 in-doubt branch(es)")) << out;
}

TEST_F(ExamplesTest, TransferMysqlCommitsAndRollsBackAcrossPostgresAndMariadb) {
  ScratchMysqlDb shop;
  MYSQL* my = MysqlConnectOrDie(Mysql().socket, shop.name());
  const std::string schema = Slurp(std::string(XATM_SOURCE_DIR) + "/examples/bank_mysql.sql");
  size_t at = 0;
  for (size_t semi; (semi = schema.find(';', at)) != std::string::npos; at = semi + 1) {
    std::string stmt = schema.substr(at, semi - at);
    if (stmt.find_first_not_of(" \n") != std::string::npos) MysqlExec(my, stmt);
  }
  std::ofstream conf(dir_ / "mysql.conf");
  conf << "[tm]\nlog_dir = " << (dir_ / "log") << "\nlog_level = warn\n\n[rm.bank]\ntype = postgresql\nconninfo = "
       << db_.conninfo() << "\n\n[rm.shop]\ntype = mysql\nsocket = " << Mysql().socket
       << "\nuser = root\ndatabase = " << shop.name() << "\n";
  conf.close();
  std::string out = Run("transfer_mysql", dir_ / "mysql.conf");
  EXPECT_NE(std::string::npos, out.find("every outcome as expected")) << out;
  EXPECT_NE(std::string::npos, out.find("CHECK fails in MariaDB")) << out;
  EXPECT_EQ("100", MysqlExec(my, "SELECT balance FROM accounts WHERE name = 'carol'"));
  mysql_close(my);
  PGconn* c = ConnectOrDie(db_.conninfo());
  EXPECT_EQ("100", Exec(c, "SELECT balance FROM accounts WHERE name = 'alice'"));
  PQfinish(c);
  EXPECT_EQ(0, MysqlPrepared(Mysql().socket));
}

}  // namespace
}  // namespace xtm::test
