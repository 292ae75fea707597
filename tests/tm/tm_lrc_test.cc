// Last-resource commit: the SQLite branch (or, with none, the last-joined
// PostgreSQL branch) commits last, in one phase, with the decision row inside
// its own transaction; no decision-log record.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <fstream>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "log/decision_log.h"
#include "support/fork_child.h"
#include "support/sync_counting_vfs.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

#ifdef XATM_FAULT_INJECTION

// A transaction's statements on tx's branches; false if one failed.
using Statements = std::function<bool(xatm_tx* tx, long id)>;

// A child process runs n transfers (ids from first) through a TM opened from
// config, with crash point `crash_at` armed if given, and must die by
// SIGKILL: at the crash point, or killing itself after the transfers (a
// process that ends between transactions without closing its TM).
void TransfersInAChildThatDies(const std::string& config, const char* crash_at, long first, int n,
                               const Statements& statements) {
  pid_t pid = ForkChild();
  if (pid == 0) {
    if (crash_at) ::setenv("XATM_CRASH_AT", crash_at, 1);
    xatm* tm = nullptr;
    if (xatm_open(config.c_str(), &tm) != XATM_OK) ::_exit(2);
    for (long id = first; id < first + n; ++id) {
      xatm_tx* tx = nullptr;
      if (xatm_start(tm, &tx) != XATM_OK) ::_exit(5);
      if (!statements(tx, id)) ::_exit(4);
      if (xatm_commit(tx) != XATM_OK) ::_exit(3);
      xatm_tx_free(tx);
    }
    if (crash_at) ::_exit(6);  // the crash point was never reached
    ::raise(SIGKILL);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
      << "the child did not die at " << (crash_at ? crash_at : "its end") << " (status " << st << ")";
}

#endif

class LastResource : public ::testing::Test {
 protected:
  void SetUp() override {
    // The default: the SQLite branch commits last.
    bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path());
    config_ = bank_->WriteConfigFile();
  }
  void TearDown() override { xatm_close(tm_); }
  void Open() { ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm_)) << xatm_errmsg(tm_); }
  // From now on the configuration has background_phase_two = true as well.
  void WithBackgroundPhaseTwo() { AddToTm("background_phase_two = true\n"); }
  void AddToTm(const std::string& line) {
    std::ifstream in(config_);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    text.replace(text.find("[tm]\n") + 5, 0, line);
    std::ofstream(config_, std::ios::trunc) << text;
  }
  int Transfer(long id, int from = 1) {
    xatm_tx* tx = nullptr;
    EXPECT_EQ(XATM_OK, xatm_start(tm_, &tx));
    PGconn* pg = xatm_pgconn(tx, "bank");
    sqlite3* db = xatm_sqlite(tx, "ledger");
    int rc = TransferStatements(pg, db, id, from, 1, 10) ? xatm_commit(tx) : (xatm_rollback(tx), XATM_ERM);
    error_ = xatm_errmsg(tm_);
    xatm_tx_free(tx);
    return rc;
  }
  // One transaction: sqlite_sql on SQLite (it must succeed), then pg_sql on
  // PostgreSQL (it may fail, as a test wants), then xatm_commit; its code.
  int Run(const char* sqlite_sql, const char* pg_sql) {
    xatm_tx* tx = nullptr;
    EXPECT_EQ(XATM_OK, xatm_start(tm_, &tx));
    EXPECT_EQ(SQLITE_OK, sqlite3_exec(xatm_sqlite(tx, "ledger"), sqlite_sql, nullptr, nullptr, nullptr));
    PQclear(PQexec(xatm_pgconn(tx, "bank"), pg_sql));
    const int rc = xatm_commit(tx);
    error_ = xatm_errmsg(tm_);
    xatm_tx_free(tx);
    return rc;
  }
  int Commits() {
    log::LogScan s;
    EXPECT_TRUE(log::ScanLog(bank_->log_dir(), &s).ok());
    int n = 0;
    for (const auto& r : s.records) n += r.type == log::RecordType::kCommit;
    return n;
  }
  std::string Decisions() {
    sqlite3* db = nullptr;
    sqlite3_open(bank_->sqlite_path().c_str(), &db);
    sqlite3_stmt* st = nullptr;
    std::string v;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM xatm_decision", -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      v = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
  }
  void ExpectConsistent() {
    EXPECT_EQ(bank_->PgTransfers(), bank_->SqliteTransfers());
    EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
    EXPECT_EQ(0, bank_->PgPrepared());
    EXPECT_EQ(0, bank_->SqlitePrepared());
  }

  ScratchDb db_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
  std::string config_;
  xatm* tm_ = nullptr;
  std::string error_;
};

TEST_F(LastResource, CommitsBothWithoutALogRecordOrASidecarWrite) {
  Open();
  ASSERT_EQ(XATM_OK, Transfer(1)) << error_;
  ExpectConsistent();
  EXPECT_EQ(std::set<long>{1}, bank_->PgTransfers());
  EXPECT_EQ(0, Commits());
  EXPECT_EQ("1", Decisions());  // kept until a later transaction removes it
  ASSERT_EQ(XATM_OK, Transfer(2, 2)) << error_;
  EXPECT_EQ("1", Decisions());  // the first one's row went with the second transaction
  EXPECT_EQ(0, Commits());
  // The last one's row goes at close.
  EXPECT_EQ(XATM_OK, xatm_close(tm_));
  tm_ = nullptr;
  EXPECT_EQ("0", Decisions());
}

// A SQLite branch that only read is not the last resource (its row would be
// written for nothing): it votes read-only, and (last_resource_commit = true)
// PostgreSQL's branch, the only writer, commits last with its row in
// xatm.decision.
// The last resource's COMMIT is the commit point: it syncs the SQLite WAL
// whatever the application set on the handle between transactions (NORMAL
// would sync nothing at a WAL commit; OFF is refused outright).
TEST_F(LastResource, TheDecisionRowsCommitSyncsWhateverTheApplicationSetOnTheHandle) {
  SyncCountingVfs vfs("ledger.db-wal");  // counts fsyncs of the SQLite file's WAL
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  sqlite3* db = xatm_sqlite(tx, "ledger");  // the thread's handle: it outlives the transaction
  ASSERT_TRUE(TransferStatements(xatm_pgconn(tx, "bank"), db, 1, 1, 1, 10));
  ASSERT_EQ(XATM_OK, xatm_commit(tx));
  xatm_tx_free(tx);
  // Between transactions the application lowers durability on the handle.
  EXPECT_EQ(SQLITE_AUTH, sqlite3_exec(db, "PRAGMA synchronous = OFF", nullptr, nullptr, nullptr));
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, "PRAGMA synchronous = NORMAL", nullptr, nullptr, nullptr));
  // So its own commits are not synced (the count sees it) ...
  vfs.Reset();
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, "UPDATE accounts SET balance = balance WHERE id = 1", nullptr, nullptr, nullptr));
  EXPECT_EQ(0, vfs.syncs());
  // ... but the next transaction's decision row is durable when it commits.
  vfs.Reset();
  EXPECT_EQ(XATM_OK, Transfer(2));
  EXPECT_GE(vfs.syncs(), 1);
  EXPECT_EQ(0, Commits());
  ASSERT_EQ(XATM_OK, xatm_close(tm_));
  tm_ = nullptr;
}

TEST_F(LastResource, SqliteBranchThatOnlyReadIsNotTheLastResource) {
  AddToTm("last_resource_commit = true\n");
  Open();
  ASSERT_EQ(XATM_OK, Run("SELECT sum(balance) FROM accounts", "UPDATE accounts SET balance = balance - 5 WHERE id = 3"))
      << error_;
  EXPECT_EQ(kAccounts * kOpening - 5, bank_->PgSum());
  EXPECT_EQ("0", Decisions());  // no row in SQLite
  PGconn* c = ConnectOrDie(bank_->pg());
  EXPECT_EQ("1", Exec(c, "SELECT count(*) FROM xatm.decision"));  // PostgreSQL's, until a later one removes it
  PQfinish(c);
  EXPECT_EQ(0, Commits());
  EXPECT_EQ(0, bank_->PgPrepared());
  // And a SQLite branch that wrote is the last resource again.
  ASSERT_EQ(XATM_OK, Transfer(40)) << error_;
  EXPECT_EQ("1", Decisions());
}

TEST_F(LastResource, PostgresVotingNoRollsBackTheLastResourceToo) {
  Open();
  EXPECT_EQ(XATM_EROLLEDBACK, Run("UPDATE accounts SET balance = balance + 5000 WHERE id = 3",
                                  "UPDATE accounts SET balance = balance - 5000 WHERE id = 3"));  // CHECK fails
  ExpectConsistent();
  EXPECT_EQ("0", Decisions());
}

TEST_F(LastResource, LastResourceRefusingToCommitRollsBackThePreparedOthers) {
  {
    sqlite3* db = nullptr;
    sqlite3_open(bank_->sqlite_path().c_str(), &db);
    ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, "CREATE TABLE loose (k TEXT PRIMARY KEY, v)", 0, 0, 0));
    sqlite3_close(db);
  }
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  PGconn* pg = xatm_pgconn(tx, "bank");
  sqlite3* db = xatm_sqlite(tx, "ledger");
  PQclear(PQexec(pg, "UPDATE accounts SET balance = balance - 1 WHERE id = 4"));
  // A row with a NULL key: SQLite's one-phase commit refuses it, after
  // PostgreSQL's branch was prepared.
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, "INSERT INTO loose VALUES (NULL, 1)", 0, 0, 0));
  EXPECT_EQ(XATM_EROLLEDBACK, xatm_commit(tx)) << xatm_errmsg(tm_);
  xatm_tx_free(tx);
  ExpectConsistent();
  EXPECT_EQ(kAccounts * kOpening, bank_->PgSum());
}

// With background phase two as well, xatm_commit returns once SQLite has
// committed with the decision row; PostgreSQL's COMMIT PREPARED runs on the
// TM's threads, and the row is deleted once they are done.
TEST_F(LastResource, WithBackgroundPhaseTwoEveryTransferIsFinishedByClose) {
  WithBackgroundPhaseTwo();
  Open();
  constexpr int kThreads = 4, kEach = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        xatm_tx* tx = nullptr;
        if (xatm_start(tm_, &tx) != XATM_OK) {
          failures++;
          continue;
        }
        const bool ok = TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), t * 1000 + i,
                                           1 + (t + i) % kAccounts, 1 + i % kAccounts, 1);
        if (!ok || xatm_commit(tx) != XATM_OK) failures++;
        xatm_tx_free(tx);
      }
    });
  }
  for (auto& w : workers) w.join();
  ASSERT_EQ(XATM_OK, xatm_close(tm_));  // waits for the background commits
  tm_ = nullptr;
  EXPECT_EQ(0, failures.load());
  ExpectConsistent();
  EXPECT_EQ(static_cast<size_t>(kThreads * kEach), bank_->PgTransfers().size());
  EXPECT_EQ(0, Commits());
  EXPECT_EQ("0", Decisions());  // every row was deleted once its branches were committed
}

#ifdef XATM_FAULT_INJECTION

// PostgreSQL account 5 to SQLite account 5.
bool BankStatements(xatm_tx* tx, long id) {
  PGconn* pg = xatm_pgconn(tx, "bank");
  sqlite3* db = xatm_sqlite(tx, "ledger");
  return TransferStatements(pg, db, id, 5, 5, 10);
}

// A transfer in a child that dies at crash point `at`.
void CrashingTransfer(const std::string& config, const char* at, long id) {
  TransfersInAChildThatDies(config, at, id, 1, BankStatements);
}

TEST_F(LastResource, CrashBeforeTheLastResourceCommitsIsPresumedAbort) {
  CrashingTransfer(config_, "tm.lrc.before_last", 7);
  EXPECT_EQ(1, bank_->PgPrepared());
  Open();  // recovery
  ExpectConsistent();
  EXPECT_TRUE(bank_->PgTransfers().empty());
}

TEST_F(LastResource, CrashAfterTheLastResourceCommittedIsFinishedAtRecovery) {
  CrashingTransfer(config_, "tm.lrc.after_last", 8);
  EXPECT_EQ(1, bank_->PgPrepared());
  EXPECT_EQ(std::set<long>{8}, bank_->SqliteTransfers());
  // The admin tool sees the decision in SQLite.
  Open();  // recovery commits PostgreSQL's branch from the decision row
  ExpectConsistent();
  EXPECT_EQ(std::set<long>{8}, bank_->PgTransfers());
  EXPECT_EQ(0, Commits());
}

// Killed on the TM's background thread, before PostgreSQL's COMMIT PREPARED:
// xatm_commit had returned (SQLite committed with the row); recovery commits
// PostgreSQL's branch from the row.
TEST_F(LastResource, WithBackgroundPhaseTwoACrashBeforeTheBackgroundCommitIsFinishedAtRecovery) {
  WithBackgroundPhaseTwo();
  pid_t pid = ForkChild();
  if (pid == 0) {
    ::setenv("XATM_CRASH_AT", "tm.background.before_commit", 1);
    xatm* tm = nullptr;
    if (xatm_open(config_.c_str(), &tm) != XATM_OK) ::_exit(2);
    xatm_tx* tx = nullptr;
    if (xatm_start(tm, &tx) != XATM_OK || !BankStatements(tx, 9)) ::_exit(3);
    if (xatm_commit(tx) != XATM_OK) ::_exit(4);
    std::this_thread::sleep_for(std::chrono::seconds(30));  // the background thread dies first
    ::_exit(5);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "status " << st;
  EXPECT_EQ(1, bank_->PgPrepared());
  EXPECT_EQ(std::set<long>{9}, bank_->SqliteTransfers());
  EXPECT_EQ("1", Decisions());
  Open();  // recovery
  ExpectConsistent();
  EXPECT_EQ(std::set<long>{9}, bank_->PgTransfers());
  EXPECT_EQ(0, Commits());
  EXPECT_EQ(XATM_OK, xatm_close(tm_));  // the row, no longer needed, goes at close
  tm_ = nullptr;
  EXPECT_EQ("0", Decisions());
}

// A process killed between transactions leaves its last decision row (it is
// deleted by the next transaction or at close); recovery deletes it, as
// nothing of that process is in doubt.
TEST_F(LastResource, RowsLeftByAKilledProcessAreCollectedAtRecovery) {
  TransfersInAChildThatDies(config_, nullptr, 20, 3, BankStatements);
  EXPECT_EQ("1", Decisions());
  Open();  // recovery
  EXPECT_EQ("0", Decisions());
  ExpectConsistent();
  EXPECT_EQ(3u, bank_->PgTransfers().size());
  // A row of the running process is never taken for a dead one's.
  ASSERT_EQ(XATM_OK, Transfer(30)) << error_;
  EXPECT_EQ("1", Decisions());
  ASSERT_EQ(XATM_OK, xatm_recover(tm_)) << xatm_errmsg(tm_);
  EXPECT_EQ("1", Decisions());
}

#endif

// Moves amount from a's account to b's (both 1 + id % 10) as transfer id.
bool PgLastResourceStatements(PGconn* a, PGconn* b, long id, int amount = 10) {
  auto ok = [](PGconn* c, const std::string& sql) {
    PGresult* r = PQexec(c, sql.c_str());
    bool good = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return good;
  };
  const std::string n = std::to_string(amount), i = std::to_string(id), acct = std::to_string(1 + id % 10);
  return ok(a, "UPDATE accounts SET balance = balance - " + n + " WHERE id = " + acct) &&
         ok(a, "INSERT INTO transfers VALUES (" + i + ")") &&
         ok(b, "UPDATE accounts SET balance = balance + " + n + " WHERE id = " + acct) &&
         ok(b, "INSERT INTO transfers VALUES (" + i + ")");
}

constexpr char kPgLast[] = "last_resource_commit = true\n";

// PostgreSQL as the last resource: two databases, no SQLite branch. The
// first is prepared; the second commits in one phase with its decision row.
class PgLastResource : public ::testing::Test {
 protected:
  void SetUp() override {
    for (ScratchDb* d : {&a_, &b_}) {
      PGconn* c = ConnectOrDie(d->conninfo());
      Exec(c, "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))");
      Exec(c, "INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 10) g");
      Exec(c, "CREATE TABLE transfers (id bigint PRIMARY KEY)");
      PQfinish(c);
    }
    std::filesystem::create_directories(dir_.path() + "/log");
    config_ = dir_.path() + "/xatm.conf";
    std::ofstream(config_) << "[tm]\nlog_dir = " << dir_.path() << "/log\nnode_name = test\n"
                           << "commit_retry_s = 5\nlog_level = warn\n" << kPgLast << "\n"
                           << "[rm.a]\ntype = postgresql\nconninfo = " << a_.conninfo() << "\n\n"
                           << "[rm.b]\ntype = postgresql\nconninfo = " << b_.conninfo() << "\n";
  }
  void TearDown() override { xatm_close(tm_); }
  void Open() { ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm_)) << xatm_errmsg(tm_); }
  // From now on the configuration has background_phase_two = true as well.
  void WithBackgroundPhaseTwo() {
    std::ifstream in(config_);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    text.replace(text.find("[tm]\n") + 5, 0, "background_phase_two = true\n");
    std::ofstream(config_, std::ios::trunc) << text;
  }
  // The configuration with setting instead of kPgLast, written to path.
  void WriteWith(const std::string& setting, const std::string& path) {
    std::string text = ReadFileOrDie(config_);
    text.replace(text.find(kPgLast), std::string(kPgLast).size(), setting);
    WriteFileOrDie(path, text);
  }
  std::string One(ScratchDb& d, const std::string& sql) {
    PGconn* c = ConnectOrDie(d.conninfo());
    std::string v = Exec(c, sql);
    PQfinish(c);
    return v;
  }
  std::string Sum(ScratchDb& d) { return One(d, "SELECT sum(balance) FROM accounts"); }
  std::string Transfers(ScratchDb& d) { return One(d, "SELECT count(*) FROM transfers"); }
  std::string Prepared(ScratchDb& d) {
    return One(d, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()");
  }
  std::string Decisions(ScratchDb& d) { return One(d, "SELECT count(*) FROM xatm.decision"); }
  // Both databases' balances and transfers, and nothing left prepared.
  void ExpectBoth(const std::string& sum_a, const std::string& sum_b, const std::string& transfers) {
    EXPECT_EQ(sum_a, Sum(a_));
    EXPECT_EQ(sum_b, Sum(b_));
    EXPECT_EQ(transfers, Transfers(a_));
    EXPECT_EQ(transfers, Transfers(b_));
    EXPECT_EQ("0", Prepared(a_));
    EXPECT_EQ("0", Prepared(b_));
  }
  int Commits() {
    log::LogScan s;
    EXPECT_TRUE(log::ScanLog(dir_.path() + "/log", &s).ok());
    int n = 0;
    for (const auto& r : s.records) n += r.type == log::RecordType::kCommit;
    return n;
  }
  int Transfer(long id, int amount = 10) {
    xatm_tx* tx = nullptr;
    EXPECT_EQ(XATM_OK, xatm_start(tm_, &tx));
    PGconn* a = xatm_pgconn(tx, "a");
    PGconn* b = xatm_pgconn(tx, "b");
    int rc = PgLastResourceStatements(a, b, id, amount) ? xatm_commit(tx) : (xatm_rollback(tx), XATM_ERM);
    error_ = xatm_errmsg(tm_);
    xatm_tx_free(tx);
    return rc;
  }

  ScratchDb a_, b_;
  TempDir dir_;
  std::string config_;
  xatm* tm_ = nullptr;
  std::string error_;
};

TEST_F(PgLastResource, CommitsBothWithOnePrepareAndNoLogRecord) {
  Open();
  // The decision table was made at open.
  EXPECT_EQ("0", Decisions(a_));
  EXPECT_EQ("0", Decisions(b_));
  ASSERT_EQ(XATM_OK, Transfer(1)) << error_;
  ExpectBoth("990", "1010", "1");
  EXPECT_EQ(0, Commits());
  EXPECT_EQ("0", Decisions(a_));
  EXPECT_EQ("1", Decisions(b_));  // b, joined last, holds it
  ASSERT_EQ(XATM_OK, Transfer(2)) << error_;
  EXPECT_EQ("1", Decisions(b_));  // the first row went with the second transaction
  EXPECT_EQ(0, Commits());
  // Many transactions leave one row, not one each.
  for (long id = 3; id < 40; ++id) ASSERT_EQ(XATM_OK, Transfer(id, 1)) << error_;
  EXPECT_EQ("1", Decisions(b_));
  EXPECT_EQ("39", Transfers(a_));
  EXPECT_EQ("39", Transfers(b_));
  EXPECT_EQ(XATM_OK, xatm_close(tm_));
  tm_ = nullptr;
  EXPECT_EQ("0", Decisions(b_));
}

// xatm.decision takes a row in and a row out per transaction; the TM vacuums
// it itself instead of leaving the dead rows to autovacuum's next visit.
TEST_F(PgLastResource, TheTmVacuumsTheDecisionTableItWrites) {
  Open();
  auto vacuums = [&](ScratchDb& d) {
    return std::stoi(One(d, "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'xatm.decision'::regclass"));
  };
  const int before = vacuums(b_);
  for (long id = 1; id <= 1100; ++id) ASSERT_EQ(XATM_OK, Transfer(id, 0)) << error_;
  bool vacuumed = false;
  for (int i = 0; i < 100 && !vacuumed; ++i) {
    vacuumed = vacuums(b_) > before;
    if (!vacuumed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(vacuumed) << "no VACUUM of xatm.decision in b after 1100 decision rows";
  EXPECT_EQ(0, vacuums(a_));  // its table never held a row
  EXPECT_EQ("1100", Transfers(a_));
  EXPECT_EQ("1100", Transfers(b_));
  EXPECT_EQ("1", Decisions(b_));
}

TEST_F(PgLastResource, FirstVotingNoRollsBackTheLastResourceToo) {
  Open();
  EXPECT_EQ(XATM_ERM, Transfer(1, 500));  // a's CHECK fails: the application rolls back
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  PGconn* a = xatm_pgconn(tx, "a");
  PGconn* b = xatm_pgconn(tx, "b");
  PQclear(PQexec(b, "UPDATE accounts SET balance = balance + 5 WHERE id = 2"));
  // A deferred constraint that fails only at PREPARE on a.
  PQclear(PQexec(a, "CREATE TABLE d (id int PRIMARY KEY, r int REFERENCES d(id) DEFERRABLE INITIALLY DEFERRED)"));
  PQclear(PQexec(a, "INSERT INTO d VALUES (1, 2)"));
  EXPECT_EQ(XATM_EROLLEDBACK, xatm_commit(tx)) << xatm_errmsg(tm_);
  xatm_tx_free(tx);
  EXPECT_EQ("1000", Sum(a_));
  EXPECT_EQ("1000", Sum(b_));
  EXPECT_EQ("0", Prepared(a_));
  EXPECT_EQ("0", Decisions(b_));
}

// The application makes the last resource's transaction READ ONLY after its
// writes: the decision row is refused; nothing is committed anywhere, and the
// error says why (architecture.md, "Last-resource commit").
TEST_F(PgLastResource, ALastResourceMadeReadOnlyByTheApplicationRollsEverythingBack) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  PGconn* a = xatm_pgconn(tx, "a");
  PGconn* b = xatm_pgconn(tx, "b");  // joined last: the last resource
  ASSERT_TRUE(PgLastResourceStatements(a, b, 1));
  Exec(b, "SET TRANSACTION READ ONLY");
  EXPECT_EQ(XATM_EROLLEDBACK, xatm_commit(tx));
  const std::string why = xatm_errmsg(tm_);
  EXPECT_NE(std::string::npos, why.find("decision row")) << why;
  EXPECT_NE(std::string::npos, why.find("read-only transaction")) << why;
  xatm_tx_free(tx);
  ExpectBoth("1000", "1000", "0");
  EXPECT_EQ("0", Decisions(b_));
  ASSERT_EQ(XATM_OK, Transfer(2)) << error_;  // the next one commits
  ExpectBoth("990", "1010", "1");
}

// A database whose sessions are read-only by default cannot hold a decision
// row: it is never the last resource, and the transaction commits by plain
// two-phase commit (the read-only branch votes XA_RDONLY).
TEST_F(PgLastResource, ReadOnlyDatabaseIsNeverTheLastResource) {
  std::ifstream in(config_);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  const std::string ro = b_.conninfo() + " options='-c default_transaction_read_only=on'";
  text.replace(text.rfind(b_.conninfo()), b_.conninfo().size(), ro);
  std::ofstream(config_, std::ios::trunc) << text;
  Open();  // no table is made in b, and that is no error
  EXPECT_EQ("0", Decisions(a_));
  EXPECT_EQ("", One(b_, "SELECT to_regclass('xatm.decision')"));
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  PGconn* a = xatm_pgconn(tx, "a");
  PGconn* b = xatm_pgconn(tx, "b");
  PQclear(PQexec(a, "UPDATE accounts SET balance = balance - 1 WHERE id = 1"));
  PGresult* r = PQexec(b, "SELECT balance FROM accounts WHERE id = 1");
  EXPECT_EQ(PGRES_TUPLES_OK, PQresultStatus(r));
  PQclear(r);
  EXPECT_EQ(XATM_OK, xatm_commit(tx)) << xatm_errmsg(tm_);
  xatm_tx_free(tx);
  EXPECT_EQ("999", Sum(a_));
  EXPECT_EQ("0", Prepared(a_));
}

// The default (and last_resource_commit = sqlite) lets only a SQLite branch
// commit last: two PostgreSQL databases get the classic protocol, and no
// table of the TM's is made in either.
TEST_F(PgLastResource, WithTheDefaultBothArePreparedAndTheDecisionIsLogged) {
  for (const std::string& setting : {std::string(), std::string("last_resource_commit = sqlite\n")}) {
    SCOPED_TRACE(setting);
    const std::string path = config_ + ".sqlite-last";
    WriteWith(setting, path);
    const int commits = Commits();
    ASSERT_EQ(XATM_OK, xatm_open(path.c_str(), &tm_)) << xatm_errmsg(tm_);
    ASSERT_EQ(XATM_OK, Transfer(setting.empty() ? 1 : 2)) << error_;
    EXPECT_EQ(commits + 1, Commits());
    EXPECT_EQ("0", Prepared(a_));
    EXPECT_EQ("0", Prepared(b_));
    EXPECT_EQ(Transfers(a_), Transfers(b_));
    EXPECT_EQ(XATM_OK, xatm_close(tm_));
    tm_ = nullptr;
    for (ScratchDb* d : {&a_, &b_}) EXPECT_EQ("0", One(*d, "SELECT count(*) FROM pg_namespace WHERE nspname = 'xatm'"));
  }
  EXPECT_EQ("2", Transfers(b_));
}

TEST_F(PgLastResource, AnUnknownSettingIsRefusedWithTheValuesThatAreKnown) {
  WriteWith("last_resource_commit = postgresql\n", config_);
  EXPECT_EQ(XATM_ECONFIG, xatm_open(config_.c_str(), &tm_));
  const std::string m = xatm_errmsg(tm_);
  for (const char* want : {"last_resource_commit", "\"postgresql\"", "sqlite", "true", "false"}) {
    EXPECT_NE(std::string::npos, m.find(want)) << m;
  }
  for (ScratchDb* d : {&a_, &b_}) EXPECT_EQ("0", One(*d, "SELECT count(*) FROM pg_namespace WHERE nspname = 'xatm'"));
}

TEST_F(PgLastResource, OpenSaysHowToMakeTheTableWhenItCannot) {
  const std::string role = "xatm_lrc_plain_" + std::to_string(::getpid());
  One(a_, "CREATE ROLE " + role + " LOGIN");
  std::ifstream in(config_);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  const std::string conninfo = b_.conninfo() + " user=" + role;
  text.replace(text.rfind(b_.conninfo()), b_.conninfo().size(), conninfo);
  std::ofstream(config_, std::ios::trunc) << text;
  EXPECT_NE(XATM_OK, xatm_open(config_.c_str(), &tm_));
  const std::string m = xatm_errmsg(tm_);
  EXPECT_NE(std::string::npos, m.find("xatm.decision")) << m;
  EXPECT_NE(std::string::npos, m.find("\"b\"")) << m;
  EXPECT_NE(std::string::npos, m.find("last_resource_commit = false")) << m;
  xatm_close(tm_);
  tm_ = nullptr;
  // Made by someone who may, it is used by the plain role.
  One(b_, "CREATE SCHEMA xatm; CREATE TABLE xatm.decision (gtrid bytea PRIMARY KEY, decided_at bigint NOT NULL); "
          "GRANT USAGE ON SCHEMA xatm TO " + role + "; GRANT SELECT, INSERT, DELETE ON xatm.decision TO " + role +
          "; GRANT SELECT, INSERT, UPDATE ON accounts, transfers TO " + role);
  Open();
  ASSERT_EQ(XATM_OK, Transfer(1)) << error_;
  EXPECT_EQ("1", Decisions(b_));
  xatm_close(tm_);
  tm_ = nullptr;
  One(b_, "DROP OWNED BY " + role);
  One(a_, "DROP ROLE " + role);
}

#ifdef XATM_FAULT_INJECTION

bool PgPairStatements(xatm_tx* tx, long id) {
  PGconn* a = xatm_pgconn(tx, "a");  // joined first: b is the last resource
  PGconn* b = xatm_pgconn(tx, "b");
  return PgLastResourceStatements(a, b, id);
}

void PgCrashingTransfer(const std::string& config, const char* at, long id) {
  TransfersInAChildThatDies(config, at, id, 1, PgPairStatements);
}

TEST_F(PgLastResource, CrashBeforeTheLastResourceCommitsIsPresumedAbort) {
  Open();  // makes the tables
  xatm_close(tm_);
  tm_ = nullptr;
  PgCrashingTransfer(config_, "tm.lrc.before_last", 7);
  EXPECT_EQ("1", Prepared(a_));
  Open();  // recovery
  EXPECT_EQ("0", Prepared(a_));
  EXPECT_EQ("1000", Sum(a_));
  EXPECT_EQ("1000", Sum(b_));
  EXPECT_EQ("0", Transfers(a_));
}

TEST_F(PgLastResource, CrashAfterTheLastResourceCommittedIsFinishedAtRecovery) {
  PgCrashingTransfer(config_, "tm.lrc.after_last", 8);
  EXPECT_EQ("1", Prepared(a_));
  EXPECT_EQ("1", Transfers(b_));
  EXPECT_EQ("1", Decisions(b_));
  // The admin tool says what recovery will do, and where the decision is.
  auto run = [](const std::string& cmd) {
    FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
    std::string out;
    char buf[512];
    while (f && std::fgets(buf, sizeof buf, f)) out += buf;
    if (f) ::pclose(f);
    return out;
  };
  const std::string cli = std::string(XATM_CLI) + " -c " + config_ + " ";
  const std::string list = run(cli + "list");
  EXPECT_NE(std::string::npos, list.find("commit (decided)")) << list;
  const size_t nl = list.find('\n');
  ASSERT_NE(std::string::npos, nl) << list;
  const std::string gtrid = list.substr(nl + 1, 40);  // the first row's first column
  const std::string show = run(cli + "show " + gtrid);
  EXPECT_NE(std::string::npos, show.find("commit (a last-resource decision row in b)")) << show;
  EXPECT_NE(std::string::npos, run(cli + "list --json").find("\"decision_row\":\"b\"")) << run(cli + "list --json");
  Open();  // recovery commits a's branch from the decision row
  EXPECT_EQ("0", Prepared(a_));
  EXPECT_EQ("1", Transfers(a_));
  EXPECT_EQ("990", Sum(a_));
  EXPECT_EQ("1010", Sum(b_));
  EXPECT_EQ(0, Commits());
}

// The process dies with its COMMIT (and the decision row) sent to the last
// resource, before the answer: the server may still be committing when the
// next process looks. Recovery ends the dead process's sessions first, so it
// sees the outcome the server reached.
TEST_F(PgLastResource, CrashWithTheLastCommitInFlightIsSettledFromTheServersOutcome) {
  PgCrashingTransfer(config_, "pgsql.onephase.after_send", 9);
  Open();
  EXPECT_EQ("0", Prepared(a_));
  // Whatever the server did with the COMMIT, both sides agree.
  EXPECT_EQ(Transfers(a_), Transfers(b_));
  EXPECT_EQ(Sum(b_) == "1010" ? "990" : "1000", Sum(a_));
}

TEST_F(PgLastResource, RowsLeftByAKilledProcessAreCollectedAtRecovery) {
  TransfersInAChildThatDies(config_, nullptr, 20, 3, PgPairStatements);
  EXPECT_EQ("1", Decisions(b_));
  Open();  // recovery
  EXPECT_EQ("0", Decisions(b_));
  EXPECT_EQ("3", Transfers(a_));
  EXPECT_EQ("3", Transfers(b_));
  // A row of the running process is never taken for a dead one's.
  ASSERT_EQ(XATM_OK, Transfer(30)) << error_;
  EXPECT_EQ("1", Decisions(b_));
  ASSERT_EQ(XATM_OK, xatm_recover(tm_)) << xatm_errmsg(tm_);
  EXPECT_EQ("1", Decisions(b_));
}

// Random kills over many last-resource transfers: every acknowledged
// transfer is on both sides, no other transfer on only one.
TEST_F(PgLastResource, RandomKillsLoseNothingAcknowledged) {
  Open();
  xatm_close(tm_);
  tm_ = nullptr;
  std::mt19937 rng(11);
  std::set<long> acked;
  long next = 100;
  for (int round = 0; round < 6; ++round) {
    int fds[2];
    ASSERT_EQ(0, ::pipe(fds));
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::close(fds[0]);
      xatm* tm = nullptr;
      if (xatm_open(config_.c_str(), &tm) != XATM_OK) ::_exit(2);
      for (long id = next;; ++id) {
        xatm_tx* tx = nullptr;
        if (xatm_start(tm, &tx) != XATM_OK) ::_exit(5);
        PGconn* a = xatm_pgconn(tx, "a");
        PGconn* b = xatm_pgconn(tx, "b");
        int rc = PgLastResourceStatements(a, b, id, id % 2 ? 1 : -1) ? xatm_commit(tx) : (xatm_rollback(tx), XATM_ERM);
        xatm_tx_free(tx);
        if (rc == XATM_OK && ::write(fds[1], &id, sizeof id) != sizeof id) ::_exit(6);
      }
    }
    ::close(fds[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 300));
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    long id;
    while (::read(fds[0], &id, sizeof id) == sizeof id) acked.insert(id);
    ::close(fds[0]);
    next += 100000;
    Open();  // recovery
    xatm_close(tm_);
    tm_ = nullptr;
    EXPECT_EQ("0", Prepared(a_));
    EXPECT_EQ("0", Prepared(b_));
    EXPECT_EQ(Transfers(a_), Transfers(b_)) << "a transfer committed on one side only";
    EXPECT_EQ(std::to_string(2000), std::to_string(std::stol(Sum(a_)) + std::stol(Sum(b_))));
  }
  EXPECT_GT(acked.size(), 0u);
  PGconn* c = ConnectOrDie(a_.conninfo());
  for (long id : acked) {
    EXPECT_EQ("1", Exec(c, "SELECT count(*) FROM transfers WHERE id = " + std::to_string(id))) << id;
  }
  PQfinish(c);
}

#endif

}  // namespace
}  // namespace xtm::test
