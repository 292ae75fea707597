// The failure cases of two-phase commit (tests/failures) with a MariaDB
// branch: its messages lost through a loopback proxy that cuts the
// connection right before XA PREPARE / XA COMMIT reaches the server or right
// after the server ran it, the server killed with SIGKILL around phase two,
// and the coordinator killed. PostgreSQL + MariaDB and MariaDB + SQLite, the
// classic protocol (every branch prepared). Each case checks that the
// outcome is atomic and that nothing is left prepared or locked.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "mysql/mysql_rm.h"
#include "mysql/three_banks.h"
#include "support/fork_child.h"
#include "support/pg_proxy.h"
#include "support/temp_dir.h"

namespace xtm::test {
namespace {

#ifdef XATM_FAULT_INJECTION

using namespace std::chrono_literals;

struct Pair {
  Side other;
  const char* name;
};
// Its name in the test listings (not its bytes, which hold pointers).
void PrintTo(const Pair& p, std::ostream* os) { *os << p.name; }

class MysqlFailure : public ::testing::TestWithParam<Pair> {
 protected:
  MysqlFailure() : server_(/*tcp=*/true), proxy_(server_.port(), PgProxy::Protocol::kMysql) {}
  void SetUp() override {
    banks_ = std::make_unique<ThreeBanks>(dir_.path(), server_.socket());
    banks_->UseMysqlPort(proxy_.port());
    config_ = banks_->WriteConfig("last_resource_commit = false\n");
  }
  void TearDown() override {
    if (tm_) xatm_close(tm_);
    mysql::SetResolveTimeoutMs(10000);
  }
  void Open() { ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm_)) << xatm_errmsg(tm_); }
  void Recover() {
    xatm* tm = nullptr;
    ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm)) << xatm_errmsg(tm);
    ASSERT_EQ(XATM_OK, xatm_close(tm));
  }
  // The other side first (branch 0), MariaDB second: MariaDB is prepared first
  // (last-joined first) and committed second.
  int Transfer(long id) {
    xatm_tx* tx = nullptr;
    EXPECT_EQ(XATM_OK, xatm_start(tm_, &tx));
    const int rc = ThreeBanks::Transfer(tx, GetParam().other, Side::kMysql, id, 1, 2, 10) ? xatm_commit(tx) : XATM_ERM;
    last_error_ = xatm_errmsg(tm_);
    xatm_tx_free(tx);
    return rc;
  }
  // Atomic, nothing in doubt, nothing locked.
  std::string Outcome(long id) {
    const Side o = GetParam().other;
    const std::set<long> a = banks_->Transfers(o), b = banks_->Transfers(Side::kMysql);
    EXPECT_EQ(a, b) << "committed on one side only";
    EXPECT_EQ(2L * ThreeBanks::kAccounts * ThreeBanks::kOpening, banks_->Sum(o) + banks_->Sum(Side::kMysql));
    EXPECT_EQ(0, banks_->Prepared(o)) << "left prepared in " << RmName(o);
    EXPECT_EQ(0, banks_->Prepared(Side::kMysql)) << "left prepared in MariaDB";
    MYSQL* my = MysqlConnectOrDie(server_.socket(), banks_->mysql_db());
    MysqlExec(my, "SET SESSION innodb_lock_wait_timeout = 5");
    MysqlExec(my, "UPDATE accounts SET balance = balance WHERE id IN (1, 2)");  // fails the test if locked
    mysql_close(my);
    const bool on_a = a.count(id) > 0, on_b = b.count(id) > 0;
    return std::string(on_a && on_b ? "committed on both" : !on_a && !on_b ? "rolled back on both" : "NOT ATOMIC");
  }

  OwnMysql server_;
  PgProxy proxy_;
  TempDir dir_;
  std::unique_ptr<ThreeBanks> banks_;
  std::string config_;
  xatm* tm_ = nullptr;
  std::string last_error_;
};

TEST_P(MysqlFailure, LostXaPrepareMessageRollsBack) {
  Open();
  proxy_.CutOn("XA PREPARE", PgProxy::Cut::kBeforeForward);
  EXPECT_EQ(XATM_EROLLEDBACK, Transfer(1)) << last_error_;
  EXPECT_EQ(1, proxy_.cuts());
  EXPECT_EQ("rolled back on both", Outcome(1));
}

// The server prepared the branch, the answer is lost, the server is
// reachable: the RM reconnects, waits until the old session is gone, finds
// the branch prepared and votes yes.
TEST_P(MysqlFailure, LostXaPrepareReplyIsResolvedByTheRm) {
  Open();
  proxy_.CutOn("XA PREPARE", PgProxy::Cut::kAfterReply);
  EXPECT_EQ(XATM_OK, Transfer(2)) << last_error_;
  EXPECT_EQ(1, proxy_.cuts());
  EXPECT_EQ("committed on both", Outcome(2));
}

// The answer is lost and the server cannot be reached for a while: the RM
// cannot know, the TM rolls back, and the prepared branch is rolled back
// once the server is back.
TEST_P(MysqlFailure, LostXaPrepareReplyWithTheServerUnreachableRollsBack) {
  mysql::SetResolveTimeoutMs(300);
  Open();
  proxy_.CutOn("XA PREPARE", PgProxy::Cut::kAfterReply, 1, [this] {
    proxy_.Refuse(true);
    std::thread([this] {
      std::this_thread::sleep_for(1500ms);
      proxy_.Refuse(false);
    }).detach();
  });
  EXPECT_EQ(XATM_EROLLEDBACK, Transfer(3)) << last_error_;
  // The prepared branch is rolled back in the background once reachable.
  for (int i = 0; i < 100 && banks_->Prepared(Side::kMysql) > 0; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ("rolled back on both", Outcome(3));
}

TEST_P(MysqlFailure, LostXaCommitMessageIsRetried) {
  Open();
  proxy_.CutOn("XA COMMIT", PgProxy::Cut::kBeforeForward);
  EXPECT_EQ(XATM_OK, Transfer(4)) << last_error_;
  EXPECT_EQ(1, proxy_.cuts());
  EXPECT_EQ("committed on both", Outcome(4));
}

TEST_P(MysqlFailure, LostXaCommitReplyIsNotCommittedTwice) {
  Open();
  proxy_.CutOn("XA COMMIT", PgProxy::Cut::kAfterReply);
  EXPECT_EQ(XATM_OK, Transfer(5)) << last_error_;
  EXPECT_EQ("committed on both", Outcome(5));
  EXPECT_EQ(ThreeBanks::kAccounts * ThreeBanks::kOpening + 10, banks_->Sum(Side::kMysql));  // once
}

// The server dies (SIGKILL) with the branch prepared, before XA COMMIT
// reaches it: the branch survives and is committed once it is back.
TEST_P(MysqlFailure, ServerKilledBeforeXaCommitKeepsTheBranchAndCommitsIt) {
  Open();
  proxy_.CutOn("XA COMMIT", PgProxy::Cut::kBeforeForward, 1, [this] { server_.Restart("immediate"); });
  EXPECT_EQ(XATM_OK, Transfer(6)) << last_error_;
  EXPECT_EQ("committed on both", Outcome(6));
}

TEST_P(MysqlFailure, ServerKilledRightAfterXaCommitCommitsOnce) {
  Open();
  proxy_.CutOn("XA COMMIT", PgProxy::Cut::kAfterReply, 1, [this] { server_.Restart("immediate"); });
  EXPECT_EQ(XATM_OK, Transfer(7)) << last_error_;
  EXPECT_EQ("committed on both", Outcome(7));
  EXPECT_EQ(ThreeBanks::kAccounts * ThreeBanks::kOpening + 10, banks_->Sum(Side::kMysql));
}

// The server killed after the decision while the coordinator is dead too:
// recovery, once both are back, commits the branch that survived.
TEST_P(MysqlFailure, CoordinatorAndServerBothKilledAfterTheDecision) {
  pid_t pid = ForkChild();
  if (pid == 0) {
    ::setenv("XATM_CRASH_AT", "tm.commit.after_decision", 1);
    xatm* tm = nullptr;
    if (xatm_open(config_.c_str(), &tm) != XATM_OK) ::_exit(2);
    xatm_tx* tx = nullptr;
    xatm_start(tm, &tx);
    ThreeBanks::Transfer(tx, GetParam().other, Side::kMysql, 8, 1, 2, 10);
    xatm_commit(tx);
    ::_exit(3);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "the child did not die at the crash point";
  server_.Restart("immediate");
  EXPECT_EQ(1, banks_->Prepared(Side::kMysql));
  Recover();
  EXPECT_EQ("committed on both", Outcome(8));
}

const Pair kPairs[] = {{Side::kPg, "PostgresAndMysql"}, {Side::kSqlite, "SqliteAndMysql"}};
INSTANTIATE_TEST_SUITE_P(Pairs, MysqlFailure, ::testing::ValuesIn(kPairs),
                         [](const ::testing::TestParamInfo<Pair>& p) { return std::string(p.param.name); });

#else

TEST(MysqlFailure, NeedsTheFaultInjectionBuild) {
  GTEST_SKIP() << "configure with -DXATM_FAULT_INJECTION=ON (scripts/test.sh does)";
}

#endif

}  // namespace
}  // namespace xtm::test
