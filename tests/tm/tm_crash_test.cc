// The TM killed for real: a child process doing transfers is SIGKILLed at
// random moments and at named crash points; the parent reopens (recovery) and
// checks that the outcome is atomic and nothing of ours stays prepared.
#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>

#include "log/decision_log.h"
#include "support/fork_child.h"
#include "support/xatmd_process.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

#ifdef XATM_FAULT_INJECTION

// The child's loop: transfers with ids from `first`, each acknowledged id
// written to fd after xatm_commit returned XATM_OK. Failures (an RM down) are
// rolled back and the loop goes on.
[[noreturn]] void TransferLoop(const std::string& config, long first, int fd, int count) {
  xatm* tm = nullptr;
  if (xatm_open(config.c_str(), &tm) != XATM_OK) {
    std::fprintf(stderr, "child: %s\n", xatm_errmsg(tm));
    ::_exit(2);
  }
  std::mt19937 rng(static_cast<unsigned>(first));
  for (long id = first; count < 0 || id < first + count; ++id) {
    xatm_tx* tx = nullptr;
    if (xatm_start(tm, &tx) != XATM_OK) ::_exit(3);
    PGconn* pg = xatm_pgconn(tx, "bank");
    sqlite3* db = pg ? xatm_sqlite(tx, "ledger") : nullptr;
    int amount = static_cast<int>(rng() % 20) - 10;
    bool ok = pg && db && TransferStatements(pg, db, id, 1 + static_cast<int>(rng() % kAccounts),
                                              1 + static_cast<int>(rng() % kAccounts), amount);
    int rc = ok ? xatm_commit(tx) : xatm_rollback(tx);
    xatm_tx_free(tx);
    if (ok && rc == XATM_OK && ::write(fd, &id, sizeof id) != sizeof id) ::_exit(4);
    if (!ok) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  xatm_close(tm);
  ::_exit(0);
}

// Opens the TM (which recovers) and closes it again.
void RecoverNow(const std::string& config) {
  xatm* tm = nullptr;
  ASSERT_EQ(XATM_OK, xatm_open(config.c_str(), &tm)) << xatm_errmsg(tm);
  ASSERT_EQ(XATM_OK, xatm_close(tm));
}

void ExpectAtomic(Bank& bank, const std::set<long>& acked) {
  std::set<long> pg = bank.PgTransfers(), sq = bank.SqliteTransfers();
  EXPECT_EQ(pg, sq) << "a transfer committed on one side only";
  for (long id : acked) EXPECT_TRUE(pg.count(id)) << "acknowledged transfer " << id << " was lost";
  EXPECT_EQ(2L * kAccounts * kOpening, bank.PgSum() + bank.SqliteSum()) << "money was created or destroyed";
  EXPECT_EQ(0, bank.PgPrepared()) << "a branch of ours stayed prepared in PostgreSQL";
  EXPECT_EQ(0, bank.SqlitePrepared()) << "a branch of ours stayed prepared in SQLite";
}

// Runs one transfer in a child that dies at crash point `at`.
void CrashOneTransfer(const std::string& config, const char* at, long id) {
  pid_t pid = ForkChild();
  if (pid == 0) {
    ::setenv("XATM_CRASH_AT", at, 1);
    int null_fd = ::open("/dev/null", O_WRONLY);
    TransferLoop(config, id, null_fd, 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the child did not die at " << at;
}

class TmCrash : public ::testing::Test {
 protected:
  void SetUp() override {
    bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path());
    // Most tests here stop the classic protocol at a named point.
    config_ = bank_->WriteConfigFile(60, kEveryBranchPrepared);
  }
  // The bank's configuration with the default settings (the SQLite branch
  // commits last, holding the decision).
  std::string DefaultConfig() {
    const std::string path = config_ + ".default";
    WriteFileOrDie(path, ReplaceEveryBranchPrepared(ReadFileOrDie(config_), ""));
    return path;
  }
  ScratchDb db_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
  std::string config_;
};

// Rounds of a transfer child SIGKILLed at a random moment, each followed by
// recovery and the atomicity checks. Returns the acknowledged transfers.
std::set<long> KillAtRandomMoments(Bank& bank, const std::string& config, int rounds, unsigned seed) {
  std::set<long> acked;
  std::mt19937 rng(seed);
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    int fds[2];
    EXPECT_EQ(0, ::pipe(fds));
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::close(fds[0]);
      TransferLoop(config, (round + 1) * 100000L, fds[1], -1);
    }
    ::close(fds[1]);
    const int want = 5 + static_cast<int>(rng() % 25);
    long id;
    for (int got = 0; got < want && ::read(fds[0], &id, sizeof id) == sizeof id; ++got) acked.insert(id);
    // Then somewhere inside the next transactions.
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    ::kill(pid, SIGKILL);
    while (::read(fds[0], &id, sizeof id) == sizeof id) acked.insert(id);
    ::close(fds[0]);
    ::waitpid(pid, nullptr, 0);
    RecoverNow(config);
    ExpectAtomic(bank, acked);
  }
  return acked;
}

// A process killed while PostgreSQL is still running its PREPARE (a slow
// deferred trigger) leaves a backend that could finish it after recovery has
// looked (PITFALLS 10b). The application renamed its session, so the TM's tag
// does not find it: recovery finds it by the pid and start time registered
// beside the log, ends it and waits before it scans. Nothing is prepared
// afterwards, nothing committed.
TEST_F(TmCrash, RecoveryEndsADeadProcesssBackendByIdentityEvenIfTheApplicationRenamedIt) {
  PGconn* admin = ConnectOrDie(db_.conninfo());
  Exec(admin, R"(CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$)");
  Exec(admin, "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON transfers DEFERRABLE INITIALLY DEFERRED "
              "FOR EACH ROW EXECUTE FUNCTION slow()");
  pid_t pid = ForkChild();
  if (pid == 0) {
    xatm* tm = nullptr;
    if (xatm_open(config_.c_str(), &tm) != XATM_OK) ::_exit(2);
    xatm_tx* tx = nullptr;
    xatm_start(tm, &tx);
    PGconn* pg = xatm_pgconn(tx, "bank");
    PQclear(PQexec(pg, "SET application_name = 'renamed by the application'"));
    TransferStatements(pg, xatm_sqlite(tx, "ledger"), 77, 1, 2, 5);
    xatm_commit(tx);  // killed during PostgreSQL's PREPARE
    ::_exit(3);
  }
  // Kill it while its backend runs PREPARE TRANSACTION (in the trigger's sleep).
  ASSERT_TRUE(WaitFor(
      [&] {
        return Exec(admin, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'renamed by the "
                           "application' AND query LIKE 'PREPARE TRANSACTION%' AND state = 'active'") == "1";
      },
      20));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  RecoverNow(config_);
  // Had recovery scanned while the backend lived, its PREPARE would land now.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ("0", Exec(admin, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'renamed by the application'"));
  EXPECT_EQ(0u, bank_->PgTransfers().count(77));
  EXPECT_EQ(0u, bank_->SqliteTransfers().count(77));
  EXPECT_EQ(0, bank_->SqlitePrepared());
  PQfinish(admin);
}

TEST_F(TmCrash, ChildKilledAtRandomMomentsLosesNothingAndLeavesNothingPrepared) {
  EXPECT_GT(KillAtRandomMoments(*bank_, config_, 8, 42).size(), 40u);
}

TEST_F(TmCrash, DefaultSettingsChildKilledAtRandomMomentsLosesNothing) {
  EXPECT_GT(KillAtRandomMoments(*bank_, DefaultConfig(), 8, 43).size(), 40u);
}

// The bank's configuration with background_phase_two = true.
std::string BackgroundConfig(const std::string& config) {
  std::string text = ReadFileOrDie(config);
  text.replace(text.find("[tm]\n") + 5, 0, "background_phase_two = true\n");
  const std::string path = config + ".background";
  WriteFileOrDie(path, text);
  return path;
}

TEST_F(TmCrash, BackgroundPhaseTwoCrashAfterTheHandOffCommitsAtRecovery) {
  const std::string config = BackgroundConfig(config_);
  CrashOneTransfer(config, "tm.commit.handed_off", 1);
  // SQLite committed on the caller's thread; PostgreSQL was still to do.
  EXPECT_EQ(1u, bank_->SqliteTransfers().count(1));
  RecoverNow(config);
  ExpectAtomic(*bank_, {1});
}

TEST_F(TmCrash, BackgroundPhaseTwoChildKilledAtRandomMomentsLosesNothing) {
  EXPECT_GT(KillAtRandomMoments(*bank_, BackgroundConfig(config_), 6, 7).size(), 30u);
}

TEST_F(TmCrash, LastResourceWithBackgroundPhaseTwoChildKilledAtRandomMomentsLosesNothing) {
  const std::string config = config_ + ".lrc-background";
  WriteFileOrDie(config, ReplaceEveryBranchPrepared(ReadFileOrDie(BackgroundConfig(config_)), "last_resource_commit = true\n"));
  EXPECT_GT(KillAtRandomMoments(*bank_, config, 6, 11).size(), 30u);
}

TEST_F(TmCrash, CrashAfterTheCommitRecordCommitsEveryBranchAtRecovery) {
  CrashOneTransfer(config_, "tm.commit.after_decision", 1);
  EXPECT_EQ(1, bank_->PgPrepared());
  EXPECT_EQ(1, bank_->SqlitePrepared());
  RecoverNow(config_);
  ExpectAtomic(*bank_, {1});
}

// A decided transaction whose SQLite branch cannot be applied any more (its
// rows were changed after the process died, before recovery): a heuristic
// hazard is recorded, and the branch is left for an operator — never rolled
// back by presumption on a later pass, although its PostgreSQL branch
// committed and its COMMIT record is ended.
TEST_F(TmCrash, ADecidedBranchThatCannotBeAppliedIsLeftToAnOperatorNeverPresumedAborted) {
  CrashOneTransfer(config_, "tm.commit.after_decision", 1);
  ASSERT_EQ(1, bank_->SqlitePrepared());
  sqlite3* db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open(bank_->sqlite_path().c_str(), &db));
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, "UPDATE accounts SET balance = balance + 1", nullptr, nullptr, nullptr));
  sqlite3_close(db);
  RecoverNow(config_);
  EXPECT_EQ(1u, bank_->PgTransfers().count(1));
  EXPECT_EQ(1, bank_->SqlitePrepared()) << "the branch that could not be applied went";
  RecoverNow(config_);  // another pass: the COMMIT is ended, the heuristic record stays
  EXPECT_EQ(1, bank_->SqlitePrepared()) << "a decided branch was rolled back by presumption";
  ShellResult r = RunShell(std::string(XATM_CLI) + " -c " + config_ + " list");
  EXPECT_EQ(1, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("heuristic")) << r.out;
}

TEST_F(TmCrash, CrashWithEveryBranchPreparedButNoDecisionRollsBackAtRecovery) {
  CrashOneTransfer(config_, "tm.prepare.after_all", 2);
  EXPECT_EQ(1, bank_->PgPrepared());
  EXPECT_EQ(1, bank_->SqlitePrepared());
  RecoverNow(config_);
  ExpectAtomic(*bank_, {});
  EXPECT_TRUE(bank_->PgTransfers().empty());
}

TEST_F(TmCrash, CrashWithSomeBranchesPreparedRollsBackAtRecovery) {
  CrashOneTransfer(config_, "tm.prepare.before_branch:2", 3);
  // PostgreSQL's PREPARE is sent first (asynchronously), then SQLite's
  // prepare is due: the TM dies with PostgreSQL's sent (and run by the
  // server) and SQLite's not.
  EXPECT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 1; }, 10));
  EXPECT_EQ(0, bank_->SqlitePrepared());
  RecoverNow(config_);
  ExpectAtomic(*bank_, {});
}

TEST_F(TmCrash, CrashBeforeEndLeavesNothingToDoButTheEndRecord) {
  CrashOneTransfer(config_, "tm.commit.before_end", 4);
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ(std::set<long>{4}, bank_->PgTransfers());
  {
    log::LogScan s;
    ASSERT_TRUE(log::ScanLog(bank_->log_dir(), &s).ok());
    int commits = 0, ends = 0;
    for (const auto& r : s.records) {
      commits += r.type == log::RecordType::kCommit;
      ends += r.type == log::RecordType::kEnd;
    }
    EXPECT_EQ(1, commits);
    EXPECT_EQ(0, ends);
  }
  RecoverNow(config_);
  ExpectAtomic(*bank_, {4});
  std::unique_ptr<log::DecisionLog> l;
  ASSERT_TRUE(log::DecisionLog::Open({.dir = bank_->log_dir(), .read_only = true}, &l).ok());
  EXPECT_TRUE(l->State().open_commits.empty());
}

TEST_F(TmCrash, CrashRightAfterPostgresAnsweredPrepareRollsBackAtRecovery) {
  CrashOneTransfer(config_, "pgsql.prepare.after_reply", 30);
  EXPECT_EQ(1, bank_->PgPrepared());
  RecoverNow(config_);
  ExpectAtomic(*bank_, {});
}

TEST_F(TmCrash, CrashRightAfterCommitPreparedAnsweredIsFinishedAtRecovery) {
  CrashOneTransfer(config_, "pgsql.commit.after_reply", 31);
  // PostgreSQL's COMMIT PREPARED is sent first and its answer read last,
  // after SQLite's commit: both are committed, the decision not ended.
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ(0, bank_->SqlitePrepared());
  RecoverNow(config_);
  ExpectAtomic(*bank_, {31});
}

TEST_F(TmCrash, TwoTmsSharingOnePostgresNeverResolveEachOthersBranches) {
  // TM A dies with both branches prepared and no decision.
  CrashOneTransfer(config_, "tm.prepare.after_all", 5);
  ASSERT_EQ(1, bank_->PgPrepared());
  // TM B: same databases, its own log. Its recovery must not touch A's branches.
  TempDir other;
  std::string cfg_b = config_ + ".b";
  {
    std::string text = "[tm]\nlog_dir = " + other.path() + "\nnode_name = other\nlog_level = warn\n\n[rm.bank]\n"
                       "type = postgresql\nconninfo = " + bank_->pg() + "\n\n[rm.ledger]\ntype = sqlite\npath = " +
                       bank_->sqlite_path() + "\n";
    FILE* f = std::fopen(cfg_b.c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
  }
  xatm* b = nullptr;
  ASSERT_EQ(XATM_OK, xatm_open(cfg_b.c_str(), &b)) << xatm_errmsg(b);
  ASSERT_EQ(XATM_OK, xatm_recover(b));
  EXPECT_EQ(1, bank_->PgPrepared());
  EXPECT_EQ(1, bank_->SqlitePrepared());
  xatm_indoubt* list = nullptr;
  size_t n = 0;
  ASSERT_EQ(XATM_OK, xatm_indoubt_list(b, &list, &n));
  ASSERT_EQ(2u, n);
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(0, list[i].ours);
  xatm_indoubt_free(list);
  ASSERT_EQ(XATM_OK, xatm_close(b));
  // A comes back and cleans up after itself.
  RecoverNow(config_);
  ExpectAtomic(*bank_, {});
}

TEST(TmCrashRestart, PostgresRestartedImmediatelyMidRunKeepsEveryTransferAtomic) {
  OwnCluster cluster;
  TempDir dir;
  Bank bank(cluster.conninfo(), dir.path());
  const std::string config = bank.WriteConfigFile();
  std::set<long> acked;
  int fds[2];
  ASSERT_EQ(0, ::pipe(fds));
  pid_t pid = ForkChild();
  if (pid == 0) {
    ::close(fds[0]);
    TransferLoop(config, 1, fds[1], -1);
  }
  ::close(fds[1]);
  long id;
  for (int got = 0; got < 20 && ::read(fds[0], &id, sizeof id) == sizeof id; ++got) acked.insert(id);
  cluster.Restart("immediate");
  // The child goes on through the restart.
  for (int got = 0; got < 20 && ::read(fds[0], &id, sizeof id) == sizeof id; ++got) acked.insert(id);
  ::kill(pid, SIGKILL);
  while (::read(fds[0], &id, sizeof id) == sizeof id) acked.insert(id);
  ::close(fds[0]);
  ::waitpid(pid, nullptr, 0);
  RecoverNow(config);
  ExpectAtomic(bank, acked);
  EXPECT_GE(acked.size(), 40u);
}

#else

TEST(TmCrash, NeedsTheFaultInjectionBuild) {
  GTEST_SKIP() << "configure with -DXATM_FAULT_INJECTION=ON (scripts/test.sh does) to run the crash tests";
}

#endif

}  // namespace
}  // namespace xtm::test
