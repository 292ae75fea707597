// Every failure case of two-phase commit from the literature, one named test
// each, on real processes, a real PostgreSQL (through a loopback proxy that
// loses messages) and a real SQLite file. Each test checks that the outcome is
// atomic and that nothing is left in doubt or locked, and records a row of the
// table that `failure_cases_table` prints at the end.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "log/decision_log.h"
#include "pgsql/pgsql_rm.h"
#include "support/fork_child.h"
#include "support/pg_proxy.h"
#include "support/xatmd_process.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

#ifdef XATM_FAULT_INJECTION

using namespace std::chrono_literals;

void Record(const std::string& name, const std::string& injected, const std::string& expected,
            const std::string& observed) {
  std::ofstream f(XATM_FAILURE_REPORT, std::ios::app);
  f << name << '\t' << injected << '\t' << expected << '\t' << observed << '\n';
}

class TwoPcFailure : public ::testing::Test {
 protected:
  explicit TwoPcFailure(int max_prepared = 64) : cluster_(max_prepared, /*tcp=*/true), proxy_(cluster_.port()) {}
  void SetUp() override {
    conninfo_ = "host=127.0.0.1 port=" + std::to_string(proxy_.port()) +
                " user=postgres dbname=postgres sslmode=disable gssencmode=disable connect_timeout=5";
    bank_ = std::make_unique<Bank>(conninfo_, dir_.path());
    // The failure cases of the classic protocol: every branch prepared, the
    // decision a record in the log.
    config_ = bank_->WriteConfigFile(60, kEveryBranchPrepared);
  }
  void TearDown() override {
    xatm_close(tm_);
    pgsql::SetResolveTimeoutMs(10000);
  }
  void Open() { ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm_)) << xatm_errmsg(tm_); }
  void Close() {
    EXPECT_EQ(XATM_OK, xatm_close(tm_));
    tm_ = nullptr;
  }
  // One transfer in this process; the code of xatm_commit.
  int Transfer(long id, int amount = 10) {
    xatm_tx* tx = nullptr;
    EXPECT_EQ(XATM_OK, xatm_start(tm_, &tx));
    PGconn* pg = xatm_pgconn(tx, "bank");  // PostgreSQL is branch 0, SQLite branch 1
    sqlite3* db = xatm_sqlite(tx, "ledger");
    int rc = pg && db && TransferStatements(pg, db, id, 1, 2, amount) ? xatm_commit(tx) : XATM_ERM;
    last_error_ = xatm_errmsg(tm_);
    xatm_tx_free(tx);
    return rc;
  }
  // One transfer in a child process that dies at crash point `at`.
  void TransferInChildDyingAt(const std::string& at, long id) {
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::setenv("XATM_CRASH_AT", at.c_str(), 1);
      xatm* tm = nullptr;
      if (xatm_open(config_.c_str(), &tm) != XATM_OK) ::_exit(2);
      xatm_tx* tx = nullptr;
      xatm_start(tm, &tx);
      PGconn* pg = xatm_pgconn(tx, "bank");  // PostgreSQL is branch 0, SQLite branch 1
      sqlite3* db = xatm_sqlite(tx, "ledger");
      TransferStatements(pg, db, id, 1, 2, 10);
      xatm_commit(tx);
      ::_exit(3);  // the crash point was not reached
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "the child did not die at " << at;
  }
  // Recovery in a child that dies at crash point `at`.
  void RecoverInChildDyingAt(const std::string& at) {
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::setenv("XATM_CRASH_AT", at.c_str(), 1);
      xatm* tm = nullptr;
      xatm_open(config_.c_str(), &tm);
      ::_exit(3);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "the recovering child did not die at " << at;
  }
  void Recover() {
    Open();
    Close();
  }
  // Atomic, nothing in doubt, nothing locked; "committed", "rolled back".
  std::string Outcome(long id) {
    std::set<long> pg = bank_->PgTransfers(), sq = bank_->SqliteTransfers();
    EXPECT_EQ(pg, sq) << "committed on one side only";
    EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
    EXPECT_EQ(0, bank_->PgPrepared()) << "left prepared in PostgreSQL";
    EXPECT_EQ(0, bank_->SqlitePrepared()) << "left prepared in SQLite";
    // Nothing locked: both rows can be written at once by someone else.
    PGconn* c = ConnectOrDie(conninfo_);
    Exec(c, "SET lock_timeout = '5s'");
    Exec(c, "UPDATE accounts SET balance = balance WHERE id IN (1, 2)");
    PQfinish(c);
    sqlite3* db = nullptr;
    sqlite3_open(bank_->sqlite_path().c_str(), &db);
    sqlite3_busy_timeout(db, 5000);
    EXPECT_EQ(SQLITE_OK, sqlite3_exec(db, "UPDATE accounts SET balance = balance WHERE id IN (1, 2)", 0, 0, 0));
    sqlite3_close(db);
    const bool on_pg = pg.count(id) > 0, on_sq = sq.count(id) > 0;
    std::string o = on_pg && on_sq ? "committed on both" : !on_pg && !on_sq ? "rolled back on both" : "NOT ATOMIC";
    return o + "; nothing prepared or locked";
  }

  OwnCluster cluster_;
  PgProxy proxy_;
  TempDir dir_;
  std::string conninfo_;
  std::unique_ptr<Bank> bank_;
  std::string config_;
  xatm* tm_ = nullptr;
  std::string last_error_;
};

TEST_F(TwoPcFailure, Case01_LostPrepareMessage) {
  Open();
  proxy_.CutOn("PREPARE TRANSACTION", PgProxy::Cut::kBeforeForward);
  EXPECT_EQ(XATM_EROLLEDBACK, Transfer(1)) << last_error_;
  std::string o = Outcome(1);
  EXPECT_EQ(1, proxy_.cuts());
  EXPECT_EQ("rolled back on both; nothing prepared or locked", o);
  Record("1 lost PREPARE message", "connection cut before PREPARE TRANSACTION reaches PostgreSQL",
         "TM aborts, nothing prepared", o);
}

TEST_F(TwoPcFailure, Case02_LostPrepareReply) {
  // The branch is prepared but the answer never arrives, and PostgreSQL
  // cannot be reached for a while: the RM cannot learn the outcome, the TM
  // aborts, and the prepared branch is found and rolled back.
  pgsql::SetResolveTimeoutMs(300);
  Open();
  proxy_.CutOn("PREPARE TRANSACTION", PgProxy::Cut::kAfterReply, 1, [this] {
    proxy_.Refuse(true);
    std::thread([this] {
      std::this_thread::sleep_for(1500ms);
      proxy_.Refuse(false);
    }).detach();
  });
  EXPECT_EQ(XATM_EROLLEDBACK, Transfer(2)) << last_error_;
  std::this_thread::sleep_for(1600ms);  // until the server is reachable again
  std::string o = Outcome(2);
  EXPECT_EQ("rolled back on both; nothing prepared or locked", o);
  Record("2 lost PREPARE reply", "PREPARE TRANSACTION runs, its reply is cut, PostgreSQL unreachable 1.5 s",
         "TM aborts, the prepared branch is rolled back", o);
}

TEST_F(TwoPcFailure, Case02b_LostPrepareReplyResolvedByTheRm) {
  // With PostgreSQL reachable, the RM reconnects, finds its gid prepared and
  // answers XA_OK: the transaction commits instead of aborting.
  Open();
  proxy_.CutOn("PREPARE TRANSACTION", PgProxy::Cut::kAfterReply);
  EXPECT_EQ(XATM_OK, Transfer(3)) << last_error_;
  std::string o = Outcome(3);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  Record("2b lost PREPARE reply, server reachable", "PREPARE TRANSACTION runs, its reply is cut",
         "the RM finds the branch prepared; commit proceeds", o);
}

TEST_F(TwoPcFailure, Case03_RmFailureBeforePrepare) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  ASSERT_TRUE(TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), 4, 1, 2, 10));
  cluster_.Stop("immediate");
  int rc = xatm_commit(tx);
  std::string err = xatm_errmsg(tm_);
  xatm_tx_free(tx);
  cluster_.Start();
  EXPECT_EQ(XATM_EROLLEDBACK, rc) << err;
  std::string o = Outcome(4);
  EXPECT_EQ("rolled back on both; nothing prepared or locked", o);
  Record("3 RM failure before prepare", "PostgreSQL stopped (immediate) before xatm_commit", "TM aborts", o);
}

TEST_F(TwoPcFailure, Case04_LostCommitMessage) {
  Open();
  proxy_.CutOn("COMMIT PREPARED", PgProxy::Cut::kBeforeForward);
  EXPECT_EQ(XATM_OK, Transfer(5)) << last_error_;
  std::string o = Outcome(5);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  Record("4 lost COMMIT message", "connection cut before COMMIT PREPARED reaches PostgreSQL",
         "TM reconnects, retries, commits", o);
}

TEST_F(TwoPcFailure, Case05_LostCommitReply) {
  Open();
  proxy_.CutOn("COMMIT PREPARED", PgProxy::Cut::kAfterReply);
  EXPECT_EQ(XATM_OK, Transfer(6)) << last_error_;
  std::string o = Outcome(6);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  Record("5 lost COMMIT reply", "COMMIT PREPARED runs, its reply is cut", "retry sees XAER_NOTA: done", o);
}

TEST_F(TwoPcFailure, Case06_RmFailureBeforeItReceivesCommit) {
  Open();
  proxy_.CutOn("COMMIT PREPARED", PgProxy::Cut::kBeforeForward, 1, [this] { cluster_.Restart("immediate"); });
  EXPECT_EQ(XATM_OK, Transfer(7)) << last_error_;
  std::string o = Outcome(7);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  Record("6 RM failure before it receives COMMIT", "PostgreSQL restarted (immediate) with the branch prepared",
         "the branch survives; committed after restart", o);
}

TEST_F(TwoPcFailure, Case07_RmFailureAfterItCommitted) {
  Open();
  proxy_.CutOn("COMMIT PREPARED", PgProxy::Cut::kAfterReply, 1, [this] { cluster_.Restart("immediate"); });
  EXPECT_EQ(XATM_OK, Transfer(8)) << last_error_;
  std::string o = Outcome(8);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  EXPECT_EQ(kAccounts * kOpening - 10, bank_->PgSum());  // once, not twice
  Record("7 RM failure after it committed", "PostgreSQL restarted right after COMMIT PREPARED ran",
         "nothing committed twice", o + "; debited once");
}

TEST_F(TwoPcFailure, Case08_CoordinatorFailureBeforePrepare) {
  TransferInChildDyingAt("tm.prepare.before_branch:1", 9);
  std::string o = Outcome(9);  // before any recovery: nothing may be prepared or locked
  Recover();
  EXPECT_EQ(o, Outcome(9));
  EXPECT_EQ("rolled back on both; nothing prepared or locked", o);
  Record("8 coordinator failure before prepare", "TM process SIGKILLed after xa_end, before xa_prepare",
         "no branch prepared or locked", o);
}

TEST_F(TwoPcFailure, Case09_CoordinatorFailureDuringPrepare) {
  TransferInChildDyingAt("tm.prepare.before_branch:2", 10);
  // PostgreSQL's PREPARE is sent first (asynchronously), then SQLite's
  // prepare is due: the TM dies with PostgreSQL's sent (and run by the
  // server) and SQLite's not.
  EXPECT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 1; }, 10));
  EXPECT_EQ(0, bank_->SqlitePrepared());
  Recover();
  std::string o = Outcome(10);
  EXPECT_EQ("rolled back on both; nothing prepared or locked", o);
  Record("9 coordinator failure during prepare", "TM SIGKILLed with one branch prepared, no decision",
         "presumed abort at recovery", o);
}

TEST_F(TwoPcFailure, Case10_CoordinatorFailureAfterTheCommitPoint) {
  TransferInChildDyingAt("tm.commit.after_decision", 11);
  EXPECT_EQ(1, bank_->PgPrepared());
  EXPECT_EQ(1, bank_->SqlitePrepared());
  Recover();
  std::string o = Outcome(11);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  Record("10 coordinator failure after the commit point", "TM SIGKILLed right after the COMMIT record is durable",
         "recovery commits every branch", o);
}

TEST_F(TwoPcFailure, Case11_CoordinatorFailureAfterEnd) {
  TransferInChildDyingAt("tm.commit.after_end", 12);
  std::string before = Outcome(12);
  log::LogScan s1;
  ASSERT_TRUE(log::ScanLog(bank_->log_dir(), &s1).ok());
  Open();
  ASSERT_EQ(XATM_OK, xatm_recover(tm_));
  Close();
  log::LogScan s2;
  ASSERT_TRUE(log::ScanLog(bank_->log_dir(), &s2).ok());
  // Recovery added nothing but the NODE record of its open.
  ASSERT_EQ(s1.records.size() + 1, s2.records.size());
  EXPECT_EQ(log::RecordType::kNode, s2.records.back().type);
  std::string o = Outcome(12);
  EXPECT_EQ(before, o);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  Record("11 coordinator failure after END", "TM SIGKILLed after the END record", "recovery does nothing",
         o + "; no recovery record");
}

TEST_F(TwoPcFailure, Case12_SqliteCrashBetweenSidecarWriteAndCommit) {
  // PostgreSQL's branch committed; SQLite's is prepared (its sidecar record
  // durable) and the process dies before SQLite's COMMIT.
  TransferInChildDyingAt("tm.commit.before_branch:2", 13);
  // PostgreSQL's COMMIT PREPARED was sent (asynchronously) before SQLite's
  // commit was due: the server runs it.
  EXPECT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0; }, 10));
  EXPECT_EQ(1, bank_->SqlitePrepared());
  Recover();
  std::string o = Outcome(13);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  Record("12 SQLite RM crash between sidecar write and commit", "SIGKILL with SQLite prepared, decision durable",
         "recovery replays the SQLite branch", o);
}

TEST_F(TwoPcFailure, Case13_SqliteCrashBetweenCommitAndSidecarDelete) {
  TransferInChildDyingAt("sqlite.commit.after_main_commit", 14);
  Recover();
  std::string o = Outcome(14);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  Record("13 SQLite RM crash between commit and sidecar delete", "SIGKILL after SQLite's COMMIT, record left",
         "the marker says committed; nothing applied twice", o);
}

TEST_F(TwoPcFailure, Case14_SqliteCrashDuringARecoveryApply) {
  TransferInChildDyingAt("tm.commit.before_branch:2", 15);
  RecoverInChildDyingAt("sqlite.replay.apply_table:2");
  EXPECT_EQ(1, bank_->SqlitePrepared());  // the half-applied replay rolled back
  Recover();
  std::string o = Outcome(15);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  Record("14 SQLite RM crash during a recovery apply", "recovering process SIGKILLed mid-replay",
         "replayed again, exactly once", o);
}

TEST_F(TwoPcFailure, Case15_TornAndCorruptedDecisionLogs) {
  Open();
  for (long id = 16; id < 20; ++id) ASSERT_EQ(XATM_OK, Transfer(id)) << last_error_;
  Close();
  const std::string seg = bank_->log_dir() + "/segment-000000000001.xlog";
  log::LogScan scan;
  ASSERT_TRUE(log::ScanLog(bank_->log_dir(), &scan).ok());
  const auto& last = scan.records.back();
  const uint64_t end = last.offset + log::kRecordHeaderSize + last.payload.size();
  std::string bytes;
  {
    std::ifstream f(seg, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  // Torn: the last record cut at every offset, then the TM opens and works.
  for (uint64_t cut = last.offset + 1; cut < end; cut += 3) {
    std::string torn = bytes;
    std::fill(torn.begin() + static_cast<long>(cut), torn.begin() + static_cast<long>(end), '\0');
    std::ofstream(seg, std::ios::binary | std::ios::trunc) << torn;
    xatm* tm = nullptr;
    ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm)) << "cut at " << cut << ": " << xatm_errmsg(tm);
    xatm_close(tm);
  }
  // Corrupt: a flipped byte in the middle is refused with the offset.
  {
    std::ifstream f(seg, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  const uint64_t victim = scan.records[2].offset;
  bytes[victim + 10] ^= 0x20;
  std::ofstream(seg, std::ios::binary | std::ios::trunc) << bytes;
  xatm* tm = nullptr;
  EXPECT_EQ(XATM_ECORRUPT, xatm_open(config_.c_str(), &tm));
  std::string m = xatm_errmsg(tm);
  xatm_close(tm);
  EXPECT_NE(std::string::npos, m.find("offset " + std::to_string(victim))) << m;
  Record("15 torn and corrupted decision logs", "last record cut at every 3rd offset; a flipped byte mid-log",
         "torn tail recovered; corruption refused with the offset",
         "opened after every cut; refused: " + m.substr(0, m.find(';')));
}

TEST_F(TwoPcFailure, Case16_DiskFullWhileWritingACommitRecord) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root";
  const std::string mnt = dir_ / "small";
  std::filesystem::create_directory(mnt);
  ASSERT_EQ(0, ::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m")) << std::strerror(errno);
  struct Unmount {
    std::string p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string log_dir = mnt + "/log";
  std::filesystem::create_directory(log_dir);
  {
    std::ofstream f(config_, std::ios::app);
    (void)f;
  }
  // The same configuration with its log on the small file system, in 16 KiB segments.
  std::string text;
  {
    std::ifstream f(config_);
    text.assign(std::istreambuf_iterator<char>(f), {});
  }
  text.replace(text.find("log_dir = ") + 10, bank_->log_dir().size(), log_dir);
  text.replace(text.find("log_level"), 0, "log_segment_kb = 16\n");
  std::ofstream(config_, std::ios::trunc) << text;
  Open();
  // Fill the file system but for a little.
  {
    FILE* f = std::fopen((mnt + "/filler").c_str(), "w");
    std::string chunk(4096, 'x');
    while (std::fwrite(chunk.data(), 1, chunk.size(), f) == chunk.size()) {
    }
    std::fclose(f);
  }
  std::set<long> acked;
  int rolled_back = 0;
  long id = 100;
  for (; id < 5000 && rolled_back == 0; ++id) {
    int rc = Transfer(id, id % 2 ? 10 : -10);
    if (rc == XATM_OK) acked.insert(id);
    else if (rc == XATM_EROLLEDBACK) rolled_back++;
    else FAIL() << "unexpected " << xatm_errstr(rc) << ": " << last_error_;
  }
  ASSERT_EQ(1, rolled_back) << "the disk never filled";
  const long failed = id - 1;
  EXPECT_NE(std::string::npos, last_error_.find("decision log")) << last_error_;
  std::filesystem::remove(mnt + "/filler");
  EXPECT_EQ(XATM_OK, Transfer(id, id % 2 ? 10 : -10)) << last_error_;
  acked.insert(id);
  Close();
  Recover();  // the log reopens: nothing was corrupted
  std::string o = Outcome(failed);
  for (long a : acked) EXPECT_TRUE(bank_->PgTransfers().count(a)) << a;
  EXPECT_EQ("rolled back on both; nothing prepared or locked", o);
  Record("16 disk full while writing a COMMIT record", "log on a full 1 MiB tmpfs",
         "not reported committed; rolled back; log intact", o + " (after " + std::to_string(acked.size() - 1) +
                                                                  " acknowledged commits)");
}

// The database stays unreachable for longer than commit_retry_s after the
// decision: xatm_commit says XATM_EPENDING (committed, not finished), the TM's
// reaper commits the branch once the database is back, and the transaction's
// decision is then retired (END in the log; with last-resource commit, its
// decision row deleted).
class TwoPcFailureLongOutage : public TwoPcFailure {
 protected:
  void Configure(bool last_resource) {
    std::string text;
    {
      std::ifstream f(config_);
      text.assign(std::istreambuf_iterator<char>(f), {});
    }
    text.replace(text.find("commit_retry_s = 5"), 18, "commit_retry_s = 1");
    if (last_resource) text = ReplaceEveryBranchPrepared(text, "last_resource_commit = true\n");
    std::ofstream(config_, std::ios::trunc) << text;
  }
  // Prepared transactions, asked past the proxy (which is refusing).
  int PreparedNow() {
    PGconn* c = ConnectOrDie(cluster_.conninfo());
    int n = std::stoi(Exec(c, "SELECT count(*) FROM pg_prepared_xacts"));
    PQfinish(c);
    return n;
  }
  // Runs transfer `id` through an outage; returns Outcome after close.
  std::string ThroughAnOutage(long id) {
    Open();
    proxy_.CutOn("COMMIT PREPARED", PgProxy::Cut::kBeforeForward, 1, [this] { proxy_.Refuse(true); });
    EXPECT_EQ(XATM_EPENDING, Transfer(id)) << last_error_;
    EXPECT_EQ(1, PreparedNow());
    EXPECT_EQ(1u, bank_->SqliteTransfers().count(id));  // the decided side is committed
    proxy_.Refuse(false);
    for (int i = 0; i < 100 && PreparedNow() > 0; ++i) std::this_thread::sleep_for(100ms);
    EXPECT_EQ(0, PreparedNow()) << "the reaper did not commit the branch once the database was back";
    Close();
    return Outcome(id);
  }
};

TEST_F(TwoPcFailureLongOutage, Case18_RmDownLongerThanThePhaseTwoRetries) {
  Configure(false);
  std::string o = ThroughAnOutage(30);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  log::LogScan scan;
  ASSERT_TRUE(log::ScanLog(bank_->log_dir(), &scan).ok());
  int commits = 0, ends = 0;
  for (const auto& r : scan.records) {
    commits += r.type == log::RecordType::kCommit;
    ends += r.type == log::RecordType::kEnd;
  }
  EXPECT_EQ(1, commits);
  EXPECT_EQ(1, ends) << "the decision was not retired once the branch was committed";
  Record("18 RM down longer than the phase-two retries", "PostgreSQL unreachable from COMMIT PREPARED on for > "
         "commit_retry_s", "XATM_EPENDING; the reaper commits it when it is back; END", o);
}

TEST_F(TwoPcFailureLongOutage, Case18b_RmDownLongerThanThePhaseTwoRetriesAfterALastResourceCommit) {
  Configure(true);
  std::string o = ThroughAnOutage(31);
  EXPECT_EQ("committed on both; nothing prepared or locked", o);
  sqlite3* db = nullptr;
  sqlite3_open(bank_->sqlite_path().c_str(), &db);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(db, "SELECT count(*) FROM xatm_decision", -1, &st, nullptr));
  ASSERT_EQ(SQLITE_ROW, sqlite3_step(st));
  EXPECT_EQ(0, sqlite3_column_int(st, 0)) << "the decision row outlived its transaction";
  sqlite3_finalize(st);
  sqlite3_close(db);
  Record("18b the same after a last-resource commit", "as 18, SQLite committed last with the decision row",
         "XATM_EPENDING; the reaper commits it; the row is deleted", o);
}

class TwoPcFailureFewSlots : public TwoPcFailure {
 protected:
  TwoPcFailureFewSlots() : TwoPcFailure(/*max_prepared=*/2) {}
};

TEST_F(TwoPcFailureFewSlots, Case17_MaxPreparedTransactionsExhausted) {
  // Someone else holds every slot.
  PGconn* other = ConnectOrDie(conninfo_);
  Exec(other, "CREATE TABLE IF NOT EXISTS other (id int PRIMARY KEY)");
  for (int i = 0; i < 2; ++i) {
    Exec(other, "BEGIN");
    Exec(other, "INSERT INTO other VALUES (" + std::to_string(i) + ")");
    Exec(other, "PREPARE TRANSACTION 'held-" + std::to_string(i) + "'");
  }
  Open();
  EXPECT_EQ(XATM_EROLLEDBACK, Transfer(21));
  EXPECT_NE(std::string::npos, last_error_.find("max_prepared_transactions")) << last_error_;
  Exec(other, "ROLLBACK PREPARED 'held-0'");
  Exec(other, "ROLLBACK PREPARED 'held-1'");
  PQfinish(other);
  std::string o = Outcome(21);
  EXPECT_EQ("rolled back on both; nothing prepared or locked", o);
  Record("17 max_prepared_transactions exhausted", "every prepared-transaction slot held by others",
         "a clear rolled-back result, no stuck branch", o);
}

#else

TEST(TwoPcFailure, NeedsTheFaultInjectionBuild) {
  GTEST_SKIP() << "configure with -DXATM_FAULT_INJECTION=ON (scripts/test.sh does)";
}

#endif

}  // namespace
}  // namespace xtm::test
