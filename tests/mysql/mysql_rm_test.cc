// The MySQL/MariaDB RM on its own, on real mariadbd servers: what xa_open
// checks, what survives the server's SIGKILL, and how a prepared branch that
// its session holds is finished from another one (PITFALLS 28-37).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "mysql/mysql_rm.h"
#include "support/mysql_server.h"
#include "xatm/rm_mysql.h"

namespace xtm::test {
namespace {

using mysql::CheckDurability;
using mysql::CheckVersion;
using mysql::ConnParams;
using mysql::ParseConnParams;

xa_switch_t& sw() { return xatm_mysql_switch; }

std::atomic<int> g_rmid{8000};

XID MakeXid(const std::string& g, const std::string& b, long format = 77) {
  XID x{};
  x.formatID = format;
  x.gtrid_length = static_cast<long>(g.size());
  x.bqual_length = static_cast<long>(b.size());
  std::memcpy(x.data, g.data(), g.size());
  std::memcpy(x.data + g.size(), b.data(), b.size());
  return x;
}

TEST(MysqlInfo, KeyValuePairsWithQuotedValues) {
  ConnParams p;
  EXPECT_EQ("", ParseConnParams("socket=/run/m.sock user=app password='a b''c\\'d' database=shop port=3307", &p));
  EXPECT_EQ("/run/m.sock", p.socket);
  EXPECT_EQ("app", p.user);
  EXPECT_EQ("a b'c'd", p.password);
  EXPECT_TRUE(p.has_password);
  EXPECT_EQ("shop", p.database);
  EXPECT_EQ(3307u, p.port);
  EXPECT_FALSE(p.durability_warn);
  EXPECT_EQ("", ParseConnParams("  host=db durability=warn ", &p));
  EXPECT_TRUE(p.durability_warn);
  EXPECT_EQ("host=db", mysql::Describe(p));
  EXPECT_NE(std::string::npos, ParseConnParams("hots=db", &p).find("unknown key \"hots\""));
  EXPECT_NE(std::string::npos, ParseConnParams("port=x", &p).find("port"));
  EXPECT_NE(std::string::npos, ParseConnParams("port=70000", &p).find("port"));
  EXPECT_NE(std::string::npos, ParseConnParams("password='open", &p).find("not closed"));
  EXPECT_NE(std::string::npos, ParseConnParams("durability=maybe", &p).find("durability"));
  EXPECT_NE(std::string::npos, ParseConnParams("user", &p).find("key=value"));
  // The password never shows in messages.
  ParseConnParams("user=u password=secret", &p);
  EXPECT_EQ(std::string::npos, mysql::Describe(p).find("secret"));
}

TEST(MysqlInfo, VersionsWhosePreparedBranchesDieWithTheirSessionAreRefused) {
  EXPECT_NE("", CheckVersion("10.4.32-MariaDB"));
  EXPECT_EQ("", CheckVersion("10.5.0-MariaDB-log"));
  EXPECT_EQ("", CheckVersion("10.11.19-MariaDB-0+deb12u1"));
  EXPECT_EQ("", CheckVersion("11.4.2-MariaDB"));
  EXPECT_NE("", CheckVersion("5.7.6"));
  EXPECT_EQ("", CheckVersion("5.7.44-log"));
  EXPECT_EQ("", CheckVersion("8.0.36"));
  EXPECT_NE("", CheckVersion("garbage"));
}

TEST(MysqlInfo, ACommitThatACrashCouldLoseIsRefusedNamingTheVariable) {
  EXPECT_EQ("", CheckDurability("1", "0", "0"));
  EXPECT_EQ("", CheckDurability("1", "1", "1"));
  EXPECT_NE(std::string::npos, CheckDurability("2", "0", "0").find("innodb_flush_log_at_trx_commit = 2"));
  EXPECT_NE(std::string::npos, CheckDurability("0", "0", "0").find("innodb_flush_log_at_trx_commit"));
  EXPECT_NE(std::string::npos, CheckDurability("1", "1", "0").find("sync_binlog = 0"));
}

// A server of the test's own, whose settings and life the test may change.
class MysqlOwnServer : public ::testing::Test {
 protected:
  void SetUp() override {
    MYSQL* my = MysqlConnectOrDie(server_.socket());
    MysqlExec(my, "CREATE DATABASE d");
    MysqlExec(my, "CREATE TABLE d.t (k varchar(64) PRIMARY KEY) ENGINE=InnoDB");
    mysql_close(my);
    info_ = MysqlInfo(server_.socket(), "d");
  }
  std::string Count() {
    MYSQL* my = MysqlConnectOrDie(server_.socket(), "d");
    const std::string n = MysqlExec(my, "SELECT count(*) FROM t");
    mysql_close(my);
    return n;
  }
  OwnMysql server_;
  std::string info_;
};

TEST_F(MysqlOwnServer, XaOpenRefusesAServerThatCouldLoseACommitUnlessToldToWarn) {
  MYSQL* admin = MysqlConnectOrDie(server_.socket());
  MysqlExec(admin, "SET GLOBAL innodb_flush_log_at_trx_commit = 2");
  const int rmid = g_rmid++;
  EXPECT_EQ(XAER_RMERR, sw().xa_open_entry(info_.data(), rmid, TMNOFLAGS));
  const std::string why = xatm_mysql_errmsg(rmid);
  EXPECT_NE(std::string::npos, why.find("innodb_flush_log_at_trx_commit = 2")) << why;
  EXPECT_NE(std::string::npos, why.find("durability=warn")) << why;
  std::string warn = info_ + " durability=warn";
  ASSERT_EQ(XA_OK, sw().xa_open_entry(warn.data(), rmid, TMNOFLAGS));
  EXPECT_NE(std::string::npos, std::string(xatm_mysql_errmsg(rmid)).find("warning")) << xatm_mysql_errmsg(rmid);
  EXPECT_EQ(XA_OK, sw().xa_close_entry(warn.data(), rmid, TMNOFLAGS));
  MysqlExec(admin, "SET GLOBAL innodb_flush_log_at_trx_commit = 1");
  mysql_close(admin);
  EXPECT_EQ(XA_OK, sw().xa_open_entry(info_.data(), rmid, TMNOFLAGS));
  EXPECT_EQ(XA_OK, sw().xa_close_entry(info_.data(), rmid, TMNOFLAGS));
}

// A prepared branch outlives the server's SIGKILL, binary xid intact, and
// another connection commits it.
TEST_F(MysqlOwnServer, APreparedBranchSurvivesTheServersKillAndAnotherConnectionCommitsIt) {
  const int rmid = g_rmid++;
  XID x = MakeXid(std::string("s\0\xff'k", 5), std::string("\x01\x00", 2), 0);
  std::thread([&] {
    ASSERT_EQ(XA_OK, sw().xa_open_entry(info_.data(), rmid, TMNOFLAGS));
    ASSERT_EQ(XA_OK, sw().xa_start_entry(&x, rmid, TMNOFLAGS));
    ASSERT_EQ(0, mysql_query(xatm_mysql_conn(rmid), "INSERT INTO t VALUES ('survivor')"));
    ASSERT_EQ(XA_OK, sw().xa_end_entry(&x, rmid, TMSUCCESS));
    ASSERT_EQ(XA_OK, sw().xa_prepare_entry(&x, rmid, TMNOFLAGS));
  }).join();  // the thread's session closes with it
  server_.Restart("immediate");
  ASSERT_EQ(XA_OK, sw().xa_open_entry(info_.data(), rmid, TMNOFLAGS));
  XID found[8];
  const int n = sw().xa_recover_entry(found, 8, rmid, TMSTARTRSCAN | TMENDRSCAN);
  ASSERT_EQ(1, n);
  EXPECT_EQ(0, std::memcmp(&found[0], &x, sizeof(long) * 3 + 7));
  EXPECT_EQ("0", Count());
  EXPECT_EQ(XA_OK, sw().xa_commit_entry(&x, rmid, TMNOFLAGS)) << xatm_mysql_errmsg(rmid);
  EXPECT_EQ("1", Count());
  EXPECT_EQ(XA_OK, sw().xa_close_entry(info_.data(), rmid, TMNOFLAGS));
}

// A branch prepared by one thread's session is held by it (PITFALLS 28):
// another thread waits for it, and commits it once that session lets go (at
// its next xa_start, or when it closes).
TEST_F(MysqlOwnServer, ABranchHeldByItsSessionIsCommittedElsewhereOnceItLetsGo) {
  mysql::SetResolveTimeoutMs(500);
  const int rmid = g_rmid++;
  XID x = MakeXid("held", "b");
  ASSERT_EQ(XA_OK, sw().xa_open_entry(info_.data(), rmid, TMNOFLAGS));
  ASSERT_EQ(XA_OK, sw().xa_start_entry(&x, rmid, TMNOFLAGS));
  ASSERT_EQ(0, mysql_query(xatm_mysql_conn(rmid), "INSERT INTO t VALUES ('held')"));
  ASSERT_EQ(XA_OK, sw().xa_end_entry(&x, rmid, TMSUCCESS));
  ASSERT_EQ(XA_OK, sw().xa_prepare_entry(&x, rmid, TMNOFLAGS));
  EXPECT_TRUE(mysql::HoldsPrepared(rmid));
  const unsigned long first_session = mysql_thread_id(xatm_mysql_conn(rmid));
  int other_rc = 0;
  std::thread([&] {
    sw().xa_open_entry(info_.data(), rmid, TMNOFLAGS);
    other_rc = sw().xa_commit_entry(&x, rmid, TMNOFLAGS);
    sw().xa_close_entry(info_.data(), rmid, TMNOFLAGS);
  }).join();
  EXPECT_EQ(XA_RETRY, other_rc) << "the other session should have waited for the one holding the branch";
  EXPECT_EQ("0", Count());
  // The next branch on this thread lets the prepared one go: a new session.
  XID y = MakeXid("next", "b");
  ASSERT_EQ(XA_OK, sw().xa_start_entry(&y, rmid, TMNOFLAGS));
  EXPECT_NE(first_session, mysql_thread_id(xatm_mysql_conn(rmid))) << "the session holding the prepared branch was kept";
  EXPECT_FALSE(mysql::HoldsPrepared(rmid));
  ASSERT_EQ(XA_OK, sw().xa_end_entry(&y, rmid, TMSUCCESS));
  ASSERT_EQ(XA_OK, sw().xa_rollback_entry(&y, rmid, TMNOFLAGS));
  std::thread([&] {
    sw().xa_open_entry(info_.data(), rmid, TMNOFLAGS);
    other_rc = sw().xa_commit_entry(&x, rmid, TMNOFLAGS);
    sw().xa_close_entry(info_.data(), rmid, TMNOFLAGS);
  }).join();
  EXPECT_EQ(XA_OK, other_rc) << "a released branch could not be committed from another session";
  EXPECT_EQ("1", Count());
  EXPECT_EQ(XA_OK, sw().xa_close_entry(info_.data(), rmid, TMNOFLAGS));
  mysql::SetResolveTimeoutMs(10000);
}

// The branch's session is killed under it: xa_end reports the lost
// connection as a rollback, and the next branch gets a new session.
TEST_F(MysqlOwnServer, ASessionKilledUnderTheBranchRollsItBackAndTheNextBranchReconnects) {
  const int rmid = g_rmid++;
  XID x = MakeXid("killed", "b");
  ASSERT_EQ(XA_OK, sw().xa_open_entry(info_.data(), rmid, TMNOFLAGS));
  ASSERT_EQ(XA_OK, sw().xa_start_entry(&x, rmid, TMNOFLAGS));
  ASSERT_EQ(0, mysql_query(xatm_mysql_conn(rmid), "INSERT INTO t VALUES ('lost')"));
  MYSQL* admin = MysqlConnectOrDie(server_.socket());
  MysqlExec(admin, "KILL CONNECTION " + std::to_string(mysql_thread_id(xatm_mysql_conn(rmid))));
  mysql_close(admin);
  EXPECT_NE(0, mysql_query(xatm_mysql_conn(rmid), "INSERT INTO t VALUES ('after')"));
  EXPECT_EQ(XA_RBCOMMFAIL, sw().xa_end_entry(&x, rmid, TMSUCCESS)) << xatm_mysql_errmsg(rmid);
  EXPECT_EQ(XA_OK, sw().xa_rollback_entry(&x, rmid, TMNOFLAGS));  // rollback-only: forgotten
  XID y = MakeXid("after-kill", "b");
  ASSERT_EQ(XA_OK, sw().xa_start_entry(&y, rmid, TMNOFLAGS)) << xatm_mysql_errmsg(rmid);
  ASSERT_EQ(0, mysql_query(xatm_mysql_conn(rmid), "INSERT INTO t VALUES ('fresh')"));
  ASSERT_EQ(XA_OK, sw().xa_end_entry(&y, rmid, TMSUCCESS));
  EXPECT_EQ(XA_OK, sw().xa_commit_entry(&y, rmid, TMONEPHASE)) << xatm_mysql_errmsg(rmid);
  EXPECT_EQ("1", Count());
  EXPECT_EQ(XA_OK, sw().xa_close_entry(info_.data(), rmid, TMNOFLAGS));
}

// A deadlock makes the branch rollback-only (PITFALLS 35): its vote is
// XA_RBDEADLOCK, and the other branch goes on.
TEST_F(MysqlOwnServer, ADeadlockedBranchVotesRbDeadlock) {
  MYSQL* my = MysqlConnectOrDie(server_.socket(), "d");
  MysqlExec(my, "INSERT INTO t VALUES ('a'), ('b')");
  mysql_close(my);
  const int r1 = g_rmid++, r2 = g_rmid++;
  XID x1 = MakeXid("dl1", "b"), x2 = MakeXid("dl2", "b");
  int vote1 = 0, vote2 = 0;
  std::atomic<int> step{0};
  auto branch = [&](int rmid, XID* x, const char* first, const char* second, int* vote) {
    sw().xa_open_entry(info_.data(), rmid, TMNOFLAGS);
    sw().xa_start_entry(x, rmid, TMNOFLAGS);
    MYSQL* c = xatm_mysql_conn(rmid);
    mysql_query(c, (std::string("UPDATE t SET k = concat(k, '1') WHERE k = '") + first + "'").c_str());
    ++step;
    while (step < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    mysql_query(c, (std::string("UPDATE t SET k = concat(k, '2') WHERE k = '") + second + "'").c_str());
    const int end = sw().xa_end_entry(x, rmid, TMSUCCESS);
    *vote = end != XA_OK ? end : sw().xa_prepare_entry(x, rmid, TMNOFLAGS);
    if (*vote == XA_OK) sw().xa_rollback_entry(x, rmid, TMNOFLAGS);
    sw().xa_close_entry(info_.data(), rmid, TMNOFLAGS);
  };
  std::thread t1(branch, r1, &x1, "a", "b", &vote1);
  std::thread t2(branch, r2, &x2, "b", "a", &vote2);
  t1.join();
  t2.join();
  EXPECT_TRUE(vote1 == XA_RBDEADLOCK || vote2 == XA_RBDEADLOCK) << vote1 << " " << vote2;
  EXPECT_TRUE(vote1 == XA_OK || vote2 == XA_OK) << vote1 << " " << vote2;
}

}  // namespace
}  // namespace xtm::test
