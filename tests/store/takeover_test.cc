// Peer takeover on a PostgreSQL decision store: two TM processes (nodes a and
// b) share one store and one bank (PostgreSQL and SQLite, the classic
// protocol). Node a is SIGKILLed, or frozen (SIGSTOP at a commit point) past
// its lease and woken; node b (takeover = true) takes it over and resolves its
// transactions. The frozen node never commits what its successor rolled back,
// and an operator's `xatm recover --node` waits for the lease unless forced.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "core/gtrid.h"
#include "support/fork_child.h"
#include "support/pg_cluster.h"
#include "support/temp_dir.h"
#include "support/xatmd_process.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

#ifdef XATM_FAULT_INJECTION

class TakeoverTest : public ::testing::Test {
 protected:
  void SetUp() override { bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path()); }

  // The bank's configuration for node `name`, with its decisions in the store.
  std::string Config(const std::string& name, bool takeover) {
    std::string text = ReadFileOrDie(bank_->WriteConfigFile(60, kEveryBranchPrepared));
    text = ReplaceEveryBranchPrepared(text, "last_resource_commit = false\nlog_store = postgresql\nlog_conninfo = " +
                                                store_.conninfo() + "\nlease_s = 2\ntakeover = " +
                                                (takeover ? "true" : "false") + "\n");
    text.replace(text.find("node_name = test"), 16, "node_name = " + name);
    text.replace(text.find("commit_retry_s = 5"), 18, "commit_retry_s = 2");
    text.replace(text.find("log_level = warn"), 16, "log_level = info\nlog_file = " + name + ".log");
    const std::string path = dir_ / (name + ".conf");
    WriteFileOrDie(path, text);
    return path;
  }

  std::string Store(const std::string& sql) {
    PGconn* c = ConnectOrDie(store_.conninfo());
    const std::string v = Exec(c, sql);
    PQfinish(c);
    return v;
  }

  // Node a in a child process: opens, does transfer id, and dies or freezes
  // at `point` (XATM_CRASH_AT or XATM_PAUSE_AT). Returns its pid; *rc_fd gets
  // what its xatm_commit returned, if it gets that far.
  pid_t RunNodeA(const std::string& env, const std::string& point, long id, int* rc_fd) {
    int r[2];
    EXPECT_EQ(0, ::pipe(r));
    const std::string config = Config("a", false);
    const pid_t pid = ForkChild();
    if (pid == 0) {
      ::setenv(env.c_str(), point.c_str(), 1);
      xatm* tm = OpenOrExit(config, 10);
      xatm_tx* tx = nullptr;
      if (xatm_start(tm, &tx) != XATM_OK) ::_exit(11);
      TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), id, 1, 2, 10);
      int rc = xatm_commit(tx);
      std::fprintf(stderr, "node a, transfer %ld: xatm_commit %d %s\n", id, rc, rc ? xatm_errmsg(tm) : "");
      if (::write(r[1], &rc, sizeof rc) != sizeof rc) ::_exit(13);
      xatm_tx_free(tx);
      xatm_close(tm);
      ::_exit(0);
    }
    ::close(r[1]);
    *rc_fd = r[0];
    return pid;
  }

  // Everything finished and atomic: nothing prepared anywhere, the transfer
  // on both sides or on neither, money conserved.
  bool FinishedAndAtomic(long id, int seconds, bool* committed) {
    if (!WaitFor([&] { return bank_->PgPrepared() == 0 && bank_->SqlitePrepared() == 0; }, seconds)) return false;
    const bool pg = bank_->PgTransfers().count(id) > 0, sq = bank_->SqliteTransfers().count(id) > 0;
    EXPECT_EQ(pg, sq) << "transfer " << id << " is on one side only";
    EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
    *committed = pg && sq;
    return true;
  }

  int TransferIn(xatm* tm, long id) {
    xatm_tx* tx = nullptr;
    int rc = xatm_start(tm, &tx);
    if (rc != XATM_OK) return rc;
    rc = TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), id, 1, 2, 10) ? xatm_commit(tx)
                                                                                                : XATM_ERROR;
    xatm_tx_free(tx);
    return rc;
  }

  // Node a frozen with its decision in the store: b commits the PostgreSQL
  // branch; woken, a finishes its own SQLite branch and reports the commit.
  // Frozen right after xatm learned that its decision is durable, or earlier:
  // the store's leader frozen after the batch's COMMIT returned, before it told
  // any committer of the batch (itself included).
  void FrozenWithItsDecisionIsCommittedBySuccessorAndItself(const char* point, long id) {
    int rc_fd = -1;
    const pid_t a = RunNodeA("XATM_PAUSE_AT", point, id, &rc_fd);
    ASSERT_TRUE(WaitStopped(a, 30));
    xatm* b = nullptr;
    ASSERT_EQ(XATM_OK, xatm_open(Config("b", true).c_str(), &b)) << xatm_errmsg(b);
    ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0; }, 20))
        << "b did not commit a's PostgreSQL branch: " << ReadFileOrDie(dir_ / "b.log");
    EXPECT_EQ(1u, bank_->PgTransfers().count(id));
    EXPECT_EQ(XATM_OK, ResumeChild(a, rc_fd)) << ReadFileOrDie(dir_ / "a.log");
    bool committed = false;
    ASSERT_TRUE(FinishedAndAtomic(id, 20, &committed));
    EXPECT_TRUE(committed);
    ASSERT_EQ(XATM_OK, xatm_close(b));
  }

  std::string NodeA(const std::string& column) { return Store("SELECT " + column + " FROM xatm.node WHERE name = 'a'"); }

  ScratchDb db_, store_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
};

// Node a dies with its decision in the store, and again with every branch
// prepared and none: node b takes it over once a's lease has run out and
// commits the one, rolls back the other; then a is settled (not taken over
// again) until it runs again.
TEST_F(TakeoverTest, ASurvivorResolvesAKilledNodesTransactions) {
  xatm* b = nullptr;
  struct Case {
    const char* point;
    long id;
    bool commits;
  } cases[] = {{"tm.commit.after_decision", 1, true}, {"tm.prepare.after_all", 2, false}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.point);
    int rc_fd = -1;
    const pid_t a = RunNodeA("XATM_CRASH_AT", c.point, c.id, &rc_fd);
    EXPECT_EQ(128 + SIGKILL, WaitChild(a));
    ::close(rc_fd);
    const std::string epoch = NodeA("epoch");
    EXPECT_EQ(1, bank_->PgPrepared());
    // b is opened once a is dead: a test forks only while it runs no TM
    // (support/fork_child.h); b still has to wait out a's lease.
    if (b == nullptr) {
      ASSERT_EQ(XATM_OK, xatm_open(Config("b", true).c_str(), &b)) << xatm_errmsg(b);
    }
    bool committed = !c.commits;
    ASSERT_TRUE(FinishedAndAtomic(c.id, 20, &committed)) << ReadFileOrDie(dir_ / "a.log");
    EXPECT_EQ(c.commits, committed);
    // Taken over (its epoch moved) and settled: its decision ended.
    EXPECT_TRUE(WaitFor([&] { return NodeA("settled") == "t"; }, 10));
    EXPECT_LT(std::stol(epoch), std::stol(NodeA("epoch")));
    EXPECT_EQ("0", Store("SELECT count(*) FROM xatm.record r JOIN xatm.node n USING (node_id) WHERE n.name = 'a'"));
    if (&c != &cases[1]) {
      ASSERT_EQ(XATM_OK, xatm_close(b));
      b = nullptr;
    }
  }
  // b goes on committing its own transactions.
  EXPECT_EQ(XATM_OK, TransferIn(b, 3)) << xatm_errmsg(b);
  ASSERT_EQ(XATM_OK, xatm_close(b));
}

// Node a frozen with every branch prepared and no decision sent, past its
// lease: b takes it over and rolls the transaction back. Woken, a's COMMIT is
// refused (its epoch moved): never XATM_OK for what its successor rolled back.
// Then a comes back as a new incarnation and commits again.
TEST_F(TakeoverTest, AFrozenNodeIsRolledBackByItsSuccessorAndItsLateCommitFenced) {
  int rc_fd = -1;
  const pid_t a = RunNodeA("XATM_PAUSE_AT", "tm.prepare.after_all", 11, &rc_fd);
  ASSERT_TRUE(WaitStopped(a, 30));
  const std::string incarnation = NodeA("incarnation");
  xatm* b = nullptr;
  ASSERT_EQ(XATM_OK, xatm_open(Config("b", true).c_str(), &b)) << xatm_errmsg(b);
  ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0; }, 20))
      << "b did not roll a's PostgreSQL branch back: " << ReadFileOrDie(dir_ / "b.log");
  EXPECT_EQ(0u, bank_->PgTransfers().count(11));
  EXPECT_EQ(XATM_EFENCED, ResumeChild(a, rc_fd)) << ReadFileOrDie(dir_ / "a.log");
  bool committed = true;
  ASSERT_TRUE(FinishedAndAtomic(11, 20, &committed));
  EXPECT_FALSE(committed);
  // Node a again: a new incarnation once b has given it back.
  xatm* again = nullptr;
  ASSERT_TRUE(WaitFor(
      [&] {
        if (xatm_open(Config("a", false).c_str(), &again) == XATM_OK) return true;
        xatm_close(again);
        again = nullptr;
        return false;
      },
      20));
  EXPECT_LT(std::stol(incarnation), std::stol(NodeA("incarnation")));
  EXPECT_EQ(XATM_OK, TransferIn(again, 12)) << xatm_errmsg(again);
  EXPECT_EQ(1u, bank_->SqliteTransfers().count(12));
  ASSERT_EQ(XATM_OK, xatm_close(again));
  ASSERT_EQ(XATM_OK, xatm_close(b));
}

TEST_F(TakeoverTest, AFrozenNodeAfterItsDecisionIsCommittedByItsSuccessorAndItself) {
  FrozenWithItsDecisionIsCommittedBySuccessorAndItself("tm.commit.after_decision", 21);
}

TEST_F(TakeoverTest, AStoreLeaderFrozenBeforeAnsweringItsBatchIsCommittedByItsSuccessorAndItself) {
  FrozenWithItsDecisionIsCommittedBySuccessorAndItself("store.decision_batch.after_commit", 22);
}

// By hand: refused while the node's lease is live (exit 5, naming the
// holder); with --force the node is taken over at once, its next commit is
// refused with a message that says so, and the one after runs in a new
// incarnation.
TEST_F(TakeoverTest, RecoverNodeByHandWaitsForTheLeaseUnlessForced) {
  xatm* a = nullptr;
  ASSERT_EQ(XATM_OK, xatm_open(Config("a", false).c_str(), &a)) << xatm_errmsg(a);
  ASSERT_EQ(XATM_OK, TransferIn(a, 31)) << xatm_errmsg(a);
  const std::string admin = Config("ops", false);
  ShellResult r = RunShell(std::string(XATM_CLI) + " -c " + admin + " recover --node a");
  EXPECT_EQ(5, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("holds its lease")) << r.out;
  r = RunShell(std::string(XATM_CLI) + " -c " + admin + " recover --node nosuch");
  EXPECT_EQ(6, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("no node nosuch")) << r.out;

  // A transaction of a in flight while it is taken over by force.
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(a, &tx));
  ASSERT_TRUE(TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), 32, 1, 2, 10));
  r = RunShell(std::string(XATM_CLI) + " -c " + admin + " recover --node a --force");
  EXPECT_EQ(0, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("took node a over")) << r.out;
  const int rc = xatm_commit(tx);
  EXPECT_NE(XATM_OK, rc);
  EXPECT_NE(std::string::npos, std::string(xatm_errmsg(a)).find("taken over")) << xatm_errmsg(a);
  xatm_tx_free(tx);
  bool committed = true;
  ASSERT_TRUE(FinishedAndAtomic(32, 20, &committed));
  EXPECT_FALSE(committed);
  EXPECT_EQ(1u, bank_->PgTransfers().count(31));
  // The next transaction runs in a new incarnation of a.
  const std::string incarnation = NodeA("incarnation");
  EXPECT_EQ(XATM_OK, TransferIn(a, 33)) << xatm_errmsg(a);
  EXPECT_LT(std::stol(incarnation), std::stol(NodeA("incarnation")));
  ASSERT_EQ(XATM_OK, xatm_close(a));
}

#else

TEST(TakeoverTest, NeedsTheFaultInjectionBuild) {
  GTEST_SKIP() << "configure with -DXATM_FAULT_INJECTION=ON (scripts/test.sh does)";
}

#endif

}  // namespace
}  // namespace xtm::test
