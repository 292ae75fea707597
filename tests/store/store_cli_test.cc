// The admin tool against a PostgreSQL decision store: `store init`, `store
// nodes`, `log dump|verify` over every node's records, and `health` saying
// what the store survives.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "support/fork_child.h"
#include "support/pg_cluster.h"
#include "support/temp_dir.h"
#include "support/xatmd_process.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

#ifdef XATM_FAULT_INJECTION

class StoreCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path());
    const std::string text = ReplaceEveryBranchPrepared(
        ReadFileOrDie(bank_->WriteConfigFile(60, kEveryBranchPrepared)),
        "last_resource_commit = false\nlog_store = postgresql\nlog_conninfo = " + store_.conninfo() + "\nlease_s = 2\n");
    config_ = dir_ / "node.conf";
    WriteFileOrDie(config_, text);
  }
  ShellResult Cli(const std::string& args) { return RunShell(std::string(XATM_CLI) + " -c " + config_ + " " + args); }
  std::string Store(const std::string& sql) {
    PGconn* c = ConnectOrDie(store_.conninfo());
    const std::string v = Exec(c, sql);
    PQfinish(c);
    return v;
  }

  ScratchDb db_, store_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
  std::string config_;
};

TEST_F(StoreCliTest, InitNodesDumpVerifyAndHealthWorkAgainstTheStore) {
  ShellResult r = Cli("store init");
  ASSERT_EQ(0, r.code) << r.out;
  EXPECT_EQ("t", Store("SELECT to_regclass('xatm.record') IS NOT NULL"));
  // The node dies with its decision recorded and its branches prepared.
  const pid_t pid = ForkChild();
  if (pid == 0) {
    ::setenv("XATM_CRASH_AT", "tm.commit.after_decision", 1);
    xatm* tm = nullptr;
    if (xatm_open(config_.c_str(), &tm) != XATM_OK) ::_exit(10);
    xatm_tx* tx = nullptr;
    if (xatm_start(tm, &tx) != XATM_OK) ::_exit(11);
    TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), 7, 1, 2, 10);
    xatm_commit(tx);
    ::_exit(12);
  }
  ASSERT_EQ(128 + SIGKILL, WaitChild(pid));
  ASSERT_TRUE(WaitFor([&] { return Store("SELECT lease_until < now() FROM xatm.node") == "t"; }, 10));

  r = Cli("store nodes");
  EXPECT_EQ(1, r.code) << r.out;  // a node waits to be taken over
  EXPECT_NE(std::string::npos, r.out.find("expired: to be taken over")) << r.out;
  r = Cli("log dump");
  EXPECT_EQ(0, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("NODE")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("COMMIT")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("bank")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("ledger")) << r.out;
  r = Cli("log verify");
  EXPECT_EQ(0, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("every one good")) << r.out;
  r = Cli("health");
  EXPECT_EQ(1, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("survives no loss of its primary")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("no one has looked after since: test")) << r.out;

  // A damaged record is reported with its node and gtrid, never skipped.
  const std::string saved = Store("SELECT encode(payload, 'hex') FROM xatm.record");
  Store("UPDATE xatm.record SET payload = '\\x0102'::bytea");
  r = Cli("log verify");
  EXPECT_EQ(3, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("bad record: node test")) << r.out;
  Store("UPDATE xatm.record SET payload = decode('" + saved + "', 'hex')");

  // The node's next incarnation finishes it; nothing is left.
  xatm* tm = nullptr;
  ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm)) << xatm_errmsg(tm);
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ(1u, bank_->SqliteTransfers().count(7));
  ASSERT_EQ(XATM_OK, xatm_close(tm));
  r = Cli("store nodes --json");
  EXPECT_NE(std::string::npos, r.out.find("\"open_decisions\":0")) << r.out;
  // Stopped, not yet looked after: an operator does (its lease is out).
  r = Cli("recover --node test");
  EXPECT_EQ(0, r.code) << r.out;
  r = Cli("store nodes --json");
  EXPECT_EQ(0, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("\"settled\":true")) << r.out;
}

TEST_F(StoreCliTest, StoreCommandsNeedAPostgresqlStore) {
  WriteFileOrDie(config_, ReadFileOrDie(bank_->WriteConfigFile(60, kEveryBranchPrepared)));
  ShellResult r = Cli("store nodes");
  EXPECT_EQ(2, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("log_store = postgresql")) << r.out;
}

#else

TEST(StoreCliTest, NeedsTheFaultInjectionBuild) {
  GTEST_SKIP() << "configure with -DXATM_FAULT_INJECTION=ON (scripts/test.sh does)";
}

#endif

}  // namespace
}  // namespace xtm::test
