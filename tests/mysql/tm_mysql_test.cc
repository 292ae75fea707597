// The TM across MariaDB and PostgreSQL, and across MariaDB and SQLite, on real
// servers: transfers commit on both sides or on neither, whatever the
// protocol, a failed statement, a killed process or a killed server.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include "mysql/three_banks.h"
#include "support/fork_child.h"
#include "support/temp_dir.h"
#include "support/xatmd_process.h"
#include "xatm/rm_mysql.h"

namespace xtm::test {
namespace {

constexpr char kClassic[] = "last_resource_commit = false\n";

struct Pair {
  Side a, b;
  const char* tm_extra;
  const char* name;
};
// Its name in the test listings (not its bytes, which hold pointers).
void PrintTo(const Pair& p, std::ostream* os) { *os << p.name; }

class TmMysql : public ::testing::TestWithParam<Pair> {
 protected:
  void SetUp() override { banks_ = std::make_unique<ThreeBanks>(dir_.path()); }
  void TearDown() override {
    if (tm_) xatm_close(tm_);
  }
  Side a() const { return GetParam().a; }
  Side b() const { return GetParam().b; }
  std::string Config() const { return banks_->WriteConfig(GetParam().tm_extra); }
  void Open() { ASSERT_EQ(XATM_OK, xatm_open(Config().c_str(), &tm_)) << xatm_errmsg(tm_); }

  int Transfer(long id, int from, int to, int amount) {
    xatm_tx* tx = nullptr;
    EXPECT_EQ(XATM_OK, xatm_start(tm_, &tx));
    int rc;
    if (ThreeBanks::Transfer(tx, a(), b(), id, from, to, amount)) {
      rc = xatm_commit(tx);
    } else {
      xatm_rollback(tx);
      rc = XATM_EROLLEDBACK;
    }
    xatm_tx_free(tx);
    return rc;
  }
  void ExpectAtomic(const std::set<long>& acked) {
    const std::set<long> ta = banks_->Transfers(a()), tb = banks_->Transfers(b());
    EXPECT_EQ(ta, tb) << "a transfer committed on one side only";
    for (long id : acked) EXPECT_EQ(1u, ta.count(id)) << "acknowledged transfer " << id << " was lost";
    EXPECT_EQ(2L * ThreeBanks::kAccounts * ThreeBanks::kOpening, banks_->Sum(a()) + banks_->Sum(b()));
    EXPECT_EQ(0, banks_->Prepared(a())) << RmName(a()) << " has a branch left prepared";
    EXPECT_EQ(0, banks_->Prepared(b())) << RmName(b()) << " has a branch left prepared";
  }

  TempDir dir_;
  std::unique_ptr<ThreeBanks> banks_;
  xatm* tm_ = nullptr;
};

TEST_P(TmMysql, TransfersCommitOnBothSides) {
  Open();
  for (long id = 1; id <= 20; ++id) ASSERT_EQ(XATM_OK, Transfer(id, 1 + id % 10, 1 + (id * 3) % 10, 7)) << xatm_errmsg(tm_);
  ExpectAtomic({1, 2, 3, 20});
  EXPECT_EQ(20u, banks_->Transfers(a()).size());
}

TEST_P(TmMysql, RollbackLeavesBothUntouched) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  ASSERT_TRUE(ThreeBanks::Transfer(tx, a(), b(), 1, 1, 2, 5));
  EXPECT_EQ(XATM_OK, xatm_rollback(tx));
  xatm_tx_free(tx);
  ExpectAtomic({});
  EXPECT_TRUE(banks_->Transfers(a()).empty());
}

// A statement on the MySQL side fails (a duplicate key) and the application
// goes on as if it had not: the branch votes no, nothing commits anywhere.
TEST_P(TmMysql, AFailedMysqlStatementTheApplicationIgnoredRollsEverythingBack) {
  Open();
  ASSERT_EQ(XATM_OK, Transfer(1, 1, 2, 5));
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  const Side other = a() == Side::kMysql ? b() : a();
  ASSERT_TRUE(ThreeBanks::Exec(tx, other, "INSERT INTO transfers VALUES (2)"));
  EXPECT_FALSE(ThreeBanks::Exec(tx, Side::kMysql, "INSERT INTO transfers VALUES (1)"));  // duplicate
  ASSERT_TRUE(ThreeBanks::Exec(tx, Side::kMysql, "INSERT INTO transfers VALUES (2)"));
  EXPECT_EQ(XATM_EROLLEDBACK, xatm_commit(tx));
  EXPECT_NE(std::string::npos, std::string(xatm_errmsg(tm_)).find("shop")) << xatm_errmsg(tm_);
  xatm_tx_free(tx);
  ExpectAtomic({1});
  EXPECT_EQ(1u, banks_->Transfers(Side::kMysql).size());
}

// Whatever the thread's session did before (a read-only branch, a rollback,
// a commit, a branch that voted no), a failed statement the application
// ignored is seen in the next branch, and a clean branch commits.
TEST_P(TmMysql, FailedStatementsAreSeenWhateverTheSessionDidBefore) {
  Open();
  const Side other = a() == Side::kMysql ? b() : a();
  auto run = [&](long id, bool read_only, bool fail, bool rollback) {
    xatm_tx* tx = nullptr;
    EXPECT_EQ(XATM_OK, xatm_start(tm_, &tx));
    EXPECT_TRUE(ThreeBanks::Exec(tx, other, "INSERT INTO transfers VALUES (" + std::to_string(id) + ")"));
    if (read_only) {
      EXPECT_TRUE(ThreeBanks::Exec(tx, Side::kMysql, "SELECT count(*) FROM accounts"));
    } else {
      if (fail) {
        EXPECT_FALSE(ThreeBanks::Exec(tx, Side::kMysql, "INSERT INTO transfers VALUES (1)"));
      }
      EXPECT_TRUE(ThreeBanks::Exec(tx, Side::kMysql, "INSERT INTO transfers VALUES (" + std::to_string(id) + ")"));
    }
    const int rc = rollback ? xatm_rollback(tx) : xatm_commit(tx);
    xatm_tx_free(tx);
    return rc;
  };
  ASSERT_EQ(XATM_OK, run(1, false, false, false));
  EXPECT_EQ(XATM_OK, run(2, true, false, false));           // read-only on MySQL
  EXPECT_EQ(XATM_EROLLEDBACK, run(3, false, true, false));  // after a read-only branch
  EXPECT_EQ(XATM_EROLLEDBACK, run(4, false, true, false));  // after a branch that voted no
  EXPECT_EQ(XATM_OK, run(5, false, true, true));            // rolled back by the application
  EXPECT_EQ(XATM_EROLLEDBACK, run(6, false, true, false));  // after an application's rollback
  EXPECT_EQ(XATM_OK, run(7, false, false, false));
  EXPECT_EQ(XATM_EROLLEDBACK, run(8, false, true, false));  // after a commit
  EXPECT_EQ((std::set<long>{1, 7}), banks_->Transfers(Side::kMysql));
  EXPECT_EQ((std::set<long>{1, 2, 7}), banks_->Transfers(other));
  EXPECT_EQ(0, banks_->Prepared(Side::kMysql));
}

// The MySQL branch's last statement fails (a CHECK): rolled back at xa_end.
TEST_P(TmMysql, AFailedLastStatementRollsBack) {
  Open();
  EXPECT_EQ(XATM_EROLLEDBACK, Transfer(1, 1, 2, 5000));  // the debit side's CHECK (balance >= 0)
  ExpectAtomic({});
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  const Side other = a() == Side::kMysql ? b() : a();
  ASSERT_TRUE(ThreeBanks::Exec(tx, other, "INSERT INTO transfers VALUES (3)"));
  ASSERT_TRUE(ThreeBanks::Exec(tx, Side::kMysql, "INSERT INTO transfers VALUES (3)"));
  EXPECT_FALSE(ThreeBanks::Exec(tx, Side::kMysql, "UPDATE accounts SET balance = -1 WHERE id = 1"));
  EXPECT_EQ(XATM_EROLLEDBACK, xatm_commit(tx)) << xatm_errmsg(tm_);
  xatm_tx_free(tx);
  ExpectAtomic({});
  EXPECT_TRUE(banks_->Transfers(Side::kMysql).empty());
}

// A MySQL branch that only read votes read-only: the other commits alone.
TEST_P(TmMysql, AReadOnlyMysqlBranchLeavesTheOtherToCommitAlone) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  const Side other = a() == Side::kMysql ? b() : a();
  ASSERT_TRUE(ThreeBanks::Exec(tx, Side::kMysql, "SELECT * FROM accounts"));
  ASSERT_TRUE(ThreeBanks::Exec(tx, other, "INSERT INTO transfers VALUES (9)"));
  EXPECT_EQ(XATM_OK, xatm_commit(tx)) << xatm_errmsg(tm_);
  xatm_tx_free(tx);
  EXPECT_EQ(1u, banks_->Transfers(other).count(9));
  EXPECT_EQ(0, banks_->Prepared(Side::kMysql));
}

// Eight threads at once, each with its own MySQL session.
TEST_P(TmMysql, ConcurrentTransfersStayConsistent) {
  Open();
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < 25; ++i) {
        const long id = t * 1000 + i;
        const int rc = Transfer(id, 1 + static_cast<int>(rng() % 10), 1 + static_cast<int>(rng() % 10), 1);
        if (rc == XATM_OK) ++ok;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_GT(ok.load(), 100);
  ExpectAtomic({});
}

#ifdef XATM_FAULT_INJECTION

// The child: transfers with ids from `first` (count < 0: forever), each
// acknowledged id written to fd.
[[noreturn]] void TransferLoop(const std::string& config, Side a, Side b, long first, int fd, int count) {
  xatm* tm = nullptr;
  if (xatm_open(config.c_str(), &tm) != XATM_OK) {
    std::fprintf(stderr, "child: %s\n", xatm_errmsg(tm));
    ::_exit(2);
  }
  std::mt19937 rng(static_cast<unsigned>(first));
  for (long id = first; count < 0 || id < first + count; ++id) {
    xatm_tx* tx = nullptr;
    if (xatm_start(tm, &tx) != XATM_OK) ::_exit(3);
    const bool ok = ThreeBanks::Transfer(tx, a, b, id, 1 + static_cast<int>(rng() % 10),
                                         1 + static_cast<int>(rng() % 10), static_cast<int>(rng() % 20) - 10);
    const int rc = ok ? xatm_commit(tx) : xatm_rollback(tx);
    xatm_tx_free(tx);
    if (ok && rc == XATM_OK && ::write(fd, &id, sizeof id) != sizeof id) ::_exit(4);
    if (!ok) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  xatm_close(tm);
  ::_exit(0);
}

class TmMysqlCrash : public TmMysql {
 protected:
  void CrashOne(const char* at, long id) {
    const std::string config = Config();
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::setenv("XATM_CRASH_AT", at, 1);
      TransferLoop(config, a(), b(), id, ::open("/dev/null", O_WRONLY), 1);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the child did not die at " << at;
  }
  void RecoverNow() {
    xatm* tm = nullptr;
    ASSERT_EQ(XATM_OK, xatm_open(Config().c_str(), &tm)) << xatm_errmsg(tm);
    ASSERT_EQ(XATM_OK, xatm_close(tm));
  }
};

// Killed after the decision: the MySQL branch, prepared in a session that
// died with the process, is committed by recovery from another session.
TEST_P(TmMysqlCrash, KilledAfterTheDecisionCommitsAtRecovery) {
  // With the default settings a SQLite branch commits last, holding the decision.
  const bool last_resource = GetParam().tm_extra != std::string(kClassic) && (a() == Side::kSqlite || b() == Side::kSqlite);
  CrashOne(last_resource ? "tm.lrc.after_last" : "tm.commit.after_decision", 1);
  EXPECT_EQ(1, banks_->Prepared(Side::kMysql));
  RecoverNow();
  ExpectAtomic({1});
  EXPECT_EQ(1u, banks_->Transfers(Side::kMysql).count(1));
}

// Killed right after MariaDB answered XA PREPARE, before any decision: presumed abort.
TEST_P(TmMysqlCrash, KilledRightAfterXaPrepareRollsBackAtRecovery) {
  CrashOne("mysql.prepare.after_reply", 2);
  EXPECT_EQ(1, banks_->Prepared(Side::kMysql));
  RecoverNow();
  ExpectAtomic({});
  EXPECT_TRUE(banks_->Transfers(Side::kMysql).empty());
}

// Killed right after MariaDB answered XA COMMIT of the prepared branch.
TEST_P(TmMysqlCrash, KilledRightAfterXaCommitIsFinishedAtRecovery) {
  CrashOne("mysql.commit.after_reply", 3);
  RecoverNow();
  ExpectAtomic({3});
}

// The process killed at random moments, round after round, each followed by
// recovery: every acknowledged transfer on both sides, nothing half done.
TEST_P(TmMysqlCrash, KilledAtRandomMomentsLosesNothing) {
  const std::string config = Config();
  std::set<long> acked;
  std::mt19937 rng(7);
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    int fds[2];
    ASSERT_EQ(0, ::pipe(fds));
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::close(fds[0]);
      TransferLoop(config, a(), b(), (round + 1) * 100000L, fds[1], -1);
    }
    ::close(fds[1]);
    const int want = 5 + static_cast<int>(rng() % 20);
    long id;
    for (int got = 0; got < want && ::read(fds[0], &id, sizeof id) == sizeof id; ++got) acked.insert(id);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    ::kill(pid, SIGKILL);
    while (::read(fds[0], &id, sizeof id) == sizeof id) acked.insert(id);
    ::close(fds[0]);
    ::waitpid(pid, nullptr, 0);
    RecoverNow();
    ExpectAtomic(acked);
  }
  EXPECT_GT(acked.size(), 30u);
}

#endif  // XATM_FAULT_INJECTION

const Pair kPairs[] = {
    {Side::kPg, Side::kMysql, "", "PostgresAndMysql"},
    {Side::kPg, Side::kMysql, kClassic, "PostgresAndMysqlClassic"},
    {Side::kMysql, Side::kSqlite, "", "MysqlAndSqlite"},
    {Side::kMysql, Side::kSqlite, kClassic, "MysqlAndSqliteClassic"},
};
std::string PairName(const ::testing::TestParamInfo<Pair>& p) { return p.param.name; }

INSTANTIATE_TEST_SUITE_P(Pairs, TmMysql, ::testing::ValuesIn(kPairs), PairName);
#ifdef XATM_FAULT_INJECTION
INSTANTIATE_TEST_SUITE_P(Pairs, TmMysqlCrash, ::testing::ValuesIn(kPairs), PairName);
#endif

}  // namespace
}  // namespace xtm::test

namespace xtm::test {
namespace {

#ifdef XATM_FAULT_INJECTION
// The admin tool sees a MySQL branch left prepared by a dead process, with
// the transaction's decision, and recovery finishes it.
TEST(MysqlAdmin, ListHealthAndRecoverShowAndFinishAMysqlBranch) {
  TempDir dir;
  ThreeBanks banks(dir.path());
  const std::string config = banks.WriteConfig("last_resource_commit = false\nrecover_on_open = false\n");
  pid_t pid = ForkChild();
  if (pid == 0) {
    ::setenv("XATM_CRASH_AT", "tm.commit.after_decision", 1);
    xatm* tm = nullptr;
    if (xatm_open(config.c_str(), &tm) != XATM_OK) ::_exit(2);
    xatm_tx* tx = nullptr;
    if (xatm_start(tm, &tx) != XATM_OK || !ThreeBanks::Transfer(tx, Side::kPg, Side::kMysql, 1, 1, 2, 5)) ::_exit(3);
    xatm_commit(tx);
    ::_exit(4);
  }
  ASSERT_EQ(128 + SIGKILL, WaitChild(pid)) << "the child did not die at the crash point";
  ASSERT_EQ(1, banks.Prepared(Side::kMysql));

  ShellResult list = RunShell(std::string(XATM_CLI) + " -c " + config + " list");
  EXPECT_EQ(1, list.code) << list.out;
  EXPECT_NE(std::string::npos, list.out.find("shop")) << list.out;
  EXPECT_NE(std::string::npos, list.out.find("commit")) << list.out;
  ShellResult health = RunShell(std::string(XATM_CLI) + " -c " + config + " health --json");
  EXPECT_NE(std::string::npos, health.out.find("\"mysql\"")) << health.out;
  EXPECT_NE(std::string::npos, health.out.find("\"in_doubt\":1")) << health.out;

  ShellResult rec = RunShell(std::string(XATM_CLI) + " -c " + config + " recover");
  EXPECT_EQ(0, rec.code) << rec.out;
  EXPECT_EQ(0, banks.Prepared(Side::kMysql));
  EXPECT_EQ(banks.Transfers(Side::kPg), banks.Transfers(Side::kMysql));
  EXPECT_EQ(1u, banks.Transfers(Side::kMysql).count(1));
  EXPECT_EQ(0, RunShell(std::string(XATM_CLI) + " -c " + config + " list").code);
}
#endif

}  // namespace
}  // namespace xtm::test
