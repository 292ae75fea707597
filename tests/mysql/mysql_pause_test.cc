// A client of xatmd frozen (SIGSTOP, as a GC or VM pause would) exactly at
// the MySQL branch's commit points, while the server declares it dead and
// resolves its transactions: the server never contradicts what the woken
// client does, and the end state is atomic with nothing left prepared.
// PostgreSQL + MariaDB, the classic protocol (the MySQL RM is never a last
// resource). docs/architecture.md, "Who else may finish a MySQL branch".
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "mysql/three_banks.h"
#include "support/fork_child.h"
#include "support/temp_dir.h"
#include "support/xatmd_process.h"

namespace xtm::test {
namespace {

#ifdef XATM_FAULT_INJECTION

class MysqlPause : public ::testing::Test {
 protected:
  void SetUp() override {
    banks_ = std::make_unique<ThreeBanks>(dir_.path());
    config_ = banks_->WriteConfig("server = unix:" + dir_.path() + "/xatmd.sock\nlast_resource_commit = false\n");
    // At info: the test waits for the server's lines ("declared dead").
    std::string text = ReadFileOrDie(config_);
    text.replace(text.find("log_level = warn"), 16, "log_level = info");
    WriteFileOrDie(config_, text + "\n[server]\nclient_timeout_s = 1\nrecovery_interval_s = 1\nmetrics = off\n");
    server_ = std::make_unique<XatmdProcess>(config_, dir_ / "xatmd.log");
    server_->Start();
  }
  // A child that runs transfer id through xatmd and stops at `point`; the
  // pipe gets what xatm_commit returned once it is woken.
  pid_t FreezeAt(const std::string& point, long id, int* rc_fd) {
    int r[2];
    EXPECT_EQ(0, ::pipe(r));
    const pid_t pid = ForkChild();
    if (pid == 0) {
      ::setenv("XATM_PAUSE_AT", point.c_str(), 1);
      xatm* tm = OpenOrExit(config_, 10);
      xatm_tx* tx = nullptr;
      if (xatm_start(tm, &tx) != XATM_OK) ::_exit(11);
      int rc = ThreeBanks::Transfer(tx, Side::kPg, Side::kMysql, id, 1, 2, 10) ? xatm_commit(tx) : -100;
      std::fprintf(stderr, "transfer %ld: xatm_commit %d %s\n", id, rc, rc ? xatm_errmsg(tm) : "");
      if (::write(r[1], &rc, sizeof rc) != sizeof rc) ::_exit(13);
      xatm_tx_free(tx);
      xatm_close(tm);
      ::_exit(0);
    }
    ::close(r[1]);
    *rc_fd = r[0];
    EXPECT_TRUE(WaitStopped(pid, 30)) << "the child did not stop at " << point;
    return pid;
  }
  // The server declares the frozen client dead and runs recovery passes.
  void LetTheServerTakeOver() {
    ASSERT_TRUE(WaitFor([&] { return server_->Count("declared dead") > 0; }, 20)) << server_->Log();
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  }
  // On both sides or neither, money conserved, nothing left prepared.
  bool AtomicAndFinished(long id) {
    EXPECT_TRUE(WaitFor([&] { return banks_->Prepared(Side::kPg) == 0 && banks_->Prepared(Side::kMysql) == 0; }, 30))
        << server_->Log();
    const bool pg = banks_->Transfers(Side::kPg).count(id) > 0, my = banks_->Transfers(Side::kMysql).count(id) > 0;
    EXPECT_EQ(pg, my) << "transfer " << id << " is on one side only";
    EXPECT_EQ(2L * ThreeBanks::kAccounts * ThreeBanks::kOpening, banks_->Sum(Side::kPg) + banks_->Sum(Side::kMysql));
    return pg && my;
  }

  TempDir dir_;
  std::unique_ptr<ThreeBanks> banks_;
  std::string config_;
  std::unique_ptr<XatmdProcess> server_;
};

// Frozen right after MariaDB answered XA PREPARE, no decision anywhere: the
// MySQL branch is held by the frozen session (the server cannot finish it),
// the PostgreSQL one is rolled back with the session the server ends. Woken,
// the client may not decide any more: it rolls back.
TEST_F(MysqlPause, FrozenAfterXaPrepareIsRolledBackAndTheLateCommitFenced) {
  int fd = -1;
  const pid_t pid = FreezeAt("mysql.prepare.after_reply", 1, &fd);
  LetTheServerTakeOver();
  EXPECT_EQ(0, banks_->Prepared(Side::kPg)) << server_->Log();
  EXPECT_EQ(1, banks_->Prepared(Side::kMysql)) << "the frozen session's branch";
  const int rc = ResumeChild(pid, fd);
  EXPECT_TRUE(rc == XATM_EFENCED || rc == XATM_EROLLEDBACK) << rc << "\n" << server_->Log();
  EXPECT_FALSE(AtomicAndFinished(1));
}

// Frozen right after the COMMIT decision is durable at the server: the server
// commits PostgreSQL; the MySQL branch waits for the session that holds it.
// Woken, the client commits it: XATM_OK, on both sides.
TEST_F(MysqlPause, FrozenAfterTheDecisionIsCommittedByTheServerAndTheClient) {
  int fd = -1;
  const pid_t pid = FreezeAt("tm.commit.after_decision", 2, &fd);
  LetTheServerTakeOver();
  EXPECT_EQ(1u, banks_->Transfers(Side::kPg).count(2)) << server_->Log();
  EXPECT_EQ(1, banks_->Prepared(Side::kMysql)) << "the frozen session's branch";
  EXPECT_EQ(XATM_OK, ResumeChild(pid, fd)) << server_->Log();
  EXPECT_TRUE(AtomicAndFinished(2));
}

// Frozen right before XA COMMIT of the decided MySQL branch (PostgreSQL
// already committed by the client): the same, from the other side.
TEST_F(MysqlPause, FrozenBeforeXaCommitIsFinishedByTheWokenClient) {
  int fd = -1;
  const pid_t pid = FreezeAt("mysql.commit.before_send", 3, &fd);
  LetTheServerTakeOver();
  EXPECT_EQ(1, banks_->Prepared(Side::kMysql)) << server_->Log();
  EXPECT_EQ(XATM_OK, ResumeChild(pid, fd)) << server_->Log();
  EXPECT_TRUE(AtomicAndFinished(3));
}

#else

TEST(MysqlPause, NeedsTheFaultInjectionBuild) {
  GTEST_SKIP() << "configure with -DXATM_FAULT_INJECTION=ON (scripts/test.sh does)";
}

#endif

}  // namespace
}  // namespace xtm::test
