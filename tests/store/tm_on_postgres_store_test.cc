// The TM with its decisions in a PostgreSQL store (log_store = postgresql):
// transfers across PostgreSQL and SQLite in the classic protocol, and a TM
// process killed before and after its decision, recovered by the next open of
// the same node.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/fork_child.h"
#include "support/pg_cluster.h"
#include "support/temp_dir.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

class TmOnPostgresStore : public ::testing::Test {
 protected:
  void SetUp() override {
    bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path());
    std::string text = ReplaceEveryBranchPrepared(ReadFileOrDie(bank_->WriteConfigFile(60, kEveryBranchPrepared)),
                                                  "last_resource_commit = false\nlog_store = postgresql\n"
                                                  "log_conninfo = " + store_.conninfo() + "\nlease_s = 3\n");
    config_ = dir_ / "store.conf";
    WriteFileOrDie(config_, text);
  }
  int Transfer(xatm* tm, long id) {
    xatm_tx* tx = nullptr;
    if (xatm_start(tm, &tx) != XATM_OK) return XATM_ERROR;
    const bool ok = TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), id, 1, 2, 10);
    const int rc = ok ? xatm_commit(tx) : XATM_ERROR;
    xatm_tx_free(tx);
    return rc;
  }
  std::string Store(const std::string& sql) {
    PGconn* c = ConnectOrDie(store_.conninfo());
    const std::string v = Exec(c, sql);
    PQfinish(c);
    return v;
  }
  void ExpectConsistent() {
    EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
    EXPECT_EQ(bank_->PgTransfers(), bank_->SqliteTransfers());
  }

  ScratchDb db_, store_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
  std::string config_;
};

TEST_F(TmOnPostgresStore, TransfersAreDecidedInTheStoreAndEnded) {
  xatm* tm = nullptr;
  ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm)) << xatm_errmsg(tm);
  for (long id = 1; id <= 20; ++id) ASSERT_EQ(XATM_OK, Transfer(tm, id)) << xatm_errmsg(tm);
  xatm_stats stats;
  ASSERT_EQ(XATM_OK, xatm_get_stats(tm, &stats));
  EXPECT_GE(stats.log_records, 20u);  // a COMMIT each (and ENDs)
  ASSERT_EQ(XATM_OK, xatm_close(tm));
  EXPECT_EQ(20u, bank_->PgTransfers().size());
  ExpectConsistent();
  // Every decision ended: nothing left in the store, no log_dir written.
  EXPECT_EQ("0", Store("SELECT count(*) FROM xatm.record"));
  EXPECT_EQ("test", Store("SELECT name FROM xatm.node"));
  EXPECT_EQ(0u, DirBytes(bank_->log_dir()));
}

// A process killed right after its decision reached the store, and one killed
// with every branch prepared and no decision: the next open of the node
// (its lease given up by the dead process's host) commits the one, rolls
// back the other.
TEST_F(TmOnPostgresStore, AKilledNodeIsRecoveredFromTheStoreByItsNextOpen) {
  struct Case {
    const char* crash_at;
    long id;
    bool commits;
  } cases[] = {{"tm.commit.after_decision", 31, true}, {"tm.prepare.after_all", 32, false}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.crash_at);
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::setenv("XATM_CRASH_AT", c.crash_at, 1);
      xatm* tm = nullptr;
      if (xatm_open(config_.c_str(), &tm) != XATM_OK) ::_exit(2);
      Transfer(tm, c.id);
      ::_exit(3);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "status " << st;
    EXPECT_EQ(1, bank_->PgPrepared());
    EXPECT_EQ(c.commits ? "1" : "0", Store("SELECT count(*) FROM xatm.record WHERE type = 2"));
    xatm* tm = nullptr;
    ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm)) << xatm_errmsg(tm);  // recovers
    EXPECT_EQ(0, bank_->PgPrepared());
    EXPECT_EQ(0, bank_->SqlitePrepared());
    EXPECT_EQ(c.commits, bank_->PgTransfers().count(c.id) == 1);
    ExpectConsistent();
    ASSERT_EQ(XATM_OK, xatm_close(tm));
    EXPECT_EQ("0", Store("SELECT count(*) FROM xatm.record"));
  }
}

TEST_F(TmOnPostgresStore, TheStoreNeedsANodeNameAndAConninfo) {
  std::string text = ReadFileOrDie(config_);
  const std::string no_name = dir_ / "no-name.conf";
  WriteFileOrDie(no_name, text.replace(text.find("node_name = test\n"), 17, ""));
  xatm* tm = nullptr;
  EXPECT_EQ(XATM_ECONFIG, xatm_open(no_name.c_str(), &tm));
  EXPECT_NE(std::string::npos, std::string(xatm_errmsg(tm)).find("needs node_name")) << xatm_errmsg(tm);
  xatm_close(tm);
}

TEST_F(TmOnPostgresStore, ADecisionIsNeverAcknowledgedBeforeItsWalIsFlushed) {
  const std::string weak = dir_ / "weak.conf";
  std::string text = ReadFileOrDie(config_);
  text.replace(text.find("lease_s = 3\n"), 12, "lease_s = 3\nlog_synchronous_commit = local\n");
  WriteFileOrDie(weak, text);
  xatm* tm = nullptr;
  EXPECT_EQ(XATM_ECONFIG, xatm_open(weak.c_str(), &tm));
  EXPECT_NE(std::string::npos, std::string(xatm_errmsg(tm)).find("must be on or remote_apply")) << xatm_errmsg(tm);
  xatm_close(tm);
}

}  // namespace
}  // namespace xtm::test
