// The transaction manager end to end, through the C API, on a real
// PostgreSQL database and a real SQLite file.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <functional>
#include <random>
#include <thread>

#include "core/gtrid.h"
#include "log/decision_log.h"
#include "support/fork_child.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

class TmTest : public ::testing::Test {
 protected:
  void SetUp() override { bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path()); }
  void TearDown() override { xatm_close(tm_); }

  void Open(int timeout_s = 60, const std::string& tm_extra = "") {
    ASSERT_EQ(XATM_OK, xatm_open(bank_->WriteConfigFile(timeout_s, tm_extra).c_str(), &tm_)) << xatm_errmsg(tm_);
  }
  // One transfer as one global transaction; returns xatm_commit's code.
  int Transfer(long id, int from, int to, int amount) {
    xatm_tx* tx = nullptr;
    EXPECT_EQ(XATM_OK, xatm_start(tm_, &tx));
    PGconn* pg = xatm_pgconn(tx, "bank");
    sqlite3* db = xatm_sqlite(tx, "ledger");
    EXPECT_NE(nullptr, pg) << xatm_errmsg(tm_);
    EXPECT_NE(nullptr, db) << xatm_errmsg(tm_);
    TransferStatements(pg, db, id, from, to, amount);
    int rc = xatm_commit(tx);
    xatm_tx_free(tx);
    return rc;
  }
  void ExpectConsistent() {
    EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
    EXPECT_EQ(bank_->PgTransfers(), bank_->SqliteTransfers());
    EXPECT_EQ(0, bank_->PgPrepared());
    EXPECT_EQ(0, bank_->SqlitePrepared());
  }
  void TransfersWhileACheckerWatches(const std::function<bool(long*)>& total);
  log::LogScan Scan() {
    log::LogScan s;
    EXPECT_TRUE(log::ScanLog(bank_->log_dir(), &s).ok());
    return s;
  }
  int Count(const log::LogScan& s, log::RecordType t) {
    int n = 0;
    for (const auto& r : s.records) n += r.type == t;
    return n;
  }

  ScratchDb db_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
  xatm* tm_ = nullptr;
};

TEST_F(TmTest, CommitsAcrossPostgresAndSqlite) {
  Open();
  ASSERT_EQ(XATM_OK, Transfer(1, 1, 2, 100)) << xatm_errmsg(tm_);
  EXPECT_EQ(kAccounts * kOpening - 100, bank_->PgSum());
  EXPECT_EQ(kAccounts * kOpening + 100, bank_->SqliteSum());
  ExpectConsistent();
  // By default the SQLite branch commits last, in one phase, with the
  // decision inside its own transaction: the log has no commit record, and
  // the PostgreSQL database gets nothing of the TM's.
  EXPECT_EQ(0, Count(Scan(), log::RecordType::kCommit));
  PGconn* c = ConnectOrDie(bank_->pg());
  EXPECT_EQ("0", Exec(c, "SELECT count(*) FROM pg_namespace WHERE nspname = 'xatm'"));
  PQfinish(c);
}

// A library is quiet by default: a configuration without log_level writes
// nothing to the application's stderr for a transaction; at info, one line
// per decision.
TEST_F(TmTest, TheDefaultLogLevelIsQuietAndInfoSaysOneLinePerDecision) {
  std::string path;
  auto with_level = [&](const std::string& level) {
    path = bank_->WriteConfigFile(60, "");
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    std::string t = text.str();
    const size_t at = t.find("log_level = warn\n");
    EXPECT_NE(std::string::npos, at);
    t.replace(at, 17, level.empty() ? "" : "log_level = " + level + "\n");
    std::ofstream(path) << t;
  };
  const std::string err = dir_.path() + "/stderr.txt";
  auto run = [&](long first_id) {
    fflush(stderr);
    const int saved = dup(2);
    const int fd = ::open(err.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    dup2(fd, 2);
    ::close(fd);
    EXPECT_EQ(XATM_OK, xatm_open(path.c_str(), &tm_)) << xatm_errmsg(tm_);
    for (long id = first_id; id < first_id + 3; ++id) EXPECT_EQ(XATM_OK, Transfer(id, 1, 2, 1));
    xatm_close(tm_);
    tm_ = nullptr;
    fflush(stderr);
    dup2(saved, 2);
    ::close(saved);
    std::ifstream in(err);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  };
  with_level("");
  EXPECT_EQ(std::vector<std::string>{}, run(1));
  with_level("info");
  int decisions = 0;
  for (const std::string& line : run(10)) decisions += line.find(" committed (2 branch(es))") != std::string::npos;
  EXPECT_EQ(3, decisions);
  ExpectConsistent();
}

TEST_F(TmTest, WithEveryBranchPreparedTheCommitPointIsALogRecord) {
  Open(60, kEveryBranchPrepared);
  ASSERT_EQ(XATM_OK, Transfer(1, 1, 2, 100)) << xatm_errmsg(tm_);
  EXPECT_EQ(kAccounts * kOpening - 100, bank_->PgSum());
  EXPECT_EQ(kAccounts * kOpening + 100, bank_->SqliteSum());
  ExpectConsistent();
  EXPECT_EQ(1, Count(Scan(), log::RecordType::kCommit));  // two writing branches: the commit point
}

TEST_F(TmTest, RollbackLeavesBothUntouched) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  ASSERT_TRUE(TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), 7, 1, 1, 50));
  ASSERT_EQ(XATM_OK, xatm_rollback(tx));
  EXPECT_EQ(XATM_EINVAL, xatm_commit(tx));
  xatm_tx_free(tx);
  EXPECT_EQ(kAccounts * kOpening, bank_->PgSum());
  EXPECT_EQ(kAccounts * kOpening, bank_->SqliteSum());
  ExpectConsistent();
}

TEST_F(TmTest, CheckFailureOnPostgresRollsBothBack) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  sqlite3* db = xatm_sqlite(tx, "ledger");
  PGconn* pg = xatm_pgconn(tx, "bank");
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, "UPDATE accounts SET balance = balance + 5000 WHERE id = 1", 0, 0, 0));
  PGresult* r = PQexec(pg, "UPDATE accounts SET balance = balance - 5000 WHERE id = 1");  // below zero
  EXPECT_EQ(PGRES_FATAL_ERROR, PQresultStatus(r));
  PQclear(r);
  EXPECT_EQ(XATM_EROLLEDBACK, xatm_commit(tx));
  EXPECT_NE(std::string::npos, std::string(xatm_errmsg(tm_)).find("bank")) << xatm_errmsg(tm_);
  xatm_tx_free(tx);
  ExpectConsistent();
  EXPECT_EQ(kAccounts * kOpening, bank_->SqliteSum());
}

TEST_F(TmTest, CheckFailureOnSqliteThenRollbackUndoesBoth) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  PGconn* pg = xatm_pgconn(tx, "bank");
  sqlite3* db = xatm_sqlite(tx, "ledger");
  PQclear(PQexec(pg, "UPDATE accounts SET balance = balance + 5000 WHERE id = 2"));
  EXPECT_EQ(SQLITE_CONSTRAINT,
            sqlite3_exec(db, "UPDATE accounts SET balance = balance - 5000 WHERE id = 2", 0, 0, 0) & 0xff);
  // Unlike PostgreSQL, SQLite keeps the transaction after a failed statement:
  // the application sees the error and rolls the global transaction back.
  ASSERT_EQ(XATM_OK, xatm_rollback(tx));
  xatm_tx_free(tx);
  EXPECT_EQ(kAccounts * kOpening, bank_->PgSum());
  ExpectConsistent();
}

TEST_F(TmTest, SingleWritingBranchCommitsInOnePhaseWithoutALogRecord) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  PQclear(PQexec(xatm_pgconn(tx, "bank"), "UPDATE accounts SET balance = balance - 1 WHERE id = 3"));
  ASSERT_EQ(XATM_OK, xatm_commit(tx)) << xatm_errmsg(tm_);
  xatm_tx_free(tx);
  EXPECT_EQ(kAccounts * kOpening - 1, bank_->PgSum());
  // A reading SQLite branch and a writing PostgreSQL one: the reader drops out
  // at prepare, and the single remaining writer needs no decision record.
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  sqlite3* db = xatm_sqlite(tx, "ledger");
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, "SELECT sum(balance) FROM accounts", 0, 0, 0));
  PQclear(PQexec(xatm_pgconn(tx, "bank"), "UPDATE accounts SET balance = balance + 1 WHERE id = 3"));
  ASSERT_EQ(XATM_OK, xatm_commit(tx)) << xatm_errmsg(tm_);
  xatm_tx_free(tx);
  EXPECT_EQ(0, Count(Scan(), log::RecordType::kCommit));
  ExpectConsistent();
}

#ifdef XATM_FAULT_INJECTION
// The reading SQLite branch settles before any vote, so the writing
// PostgreSQL branch commits in one phase: no PREPARE TRANSACTION is sent (a
// child with a crash point on it lives), and none stays behind.
TEST_F(TmTest, ReadingSqliteBranchLeavesThePostgresWriterToCommitInOnePhase) {
  const std::string config = bank_->WriteConfigFile();
  pid_t pid = ForkChild();
  if (pid == 0) {
    ::setenv("XATM_CRASH_AT", "pgsql.prepare.before_send", 1);
    xatm* tm = nullptr;
    if (xatm_open(config.c_str(), &tm) != XATM_OK) ::_exit(2);
    xatm_tx* tx = nullptr;
    if (xatm_start(tm, &tx) != XATM_OK) ::_exit(3);
    sqlite3* db = xatm_sqlite(tx, "ledger");
    PGconn* pg = xatm_pgconn(tx, "bank");
    if (!db || !pg || sqlite3_exec(db, "SELECT sum(balance) FROM accounts", 0, 0, 0) != SQLITE_OK) ::_exit(4);
    PGresult* r = PQexec(pg, "UPDATE accounts SET balance = balance - 7 WHERE id = 2");
    const bool updated = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!updated || xatm_commit(tx) != XATM_OK) ::_exit(5);
    xatm_tx_free(tx);
    ::_exit(xatm_close(tm) == XATM_OK ? 0 : 6);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
      << (WIFSIGNALED(st) ? "PREPARE TRANSACTION was sent" : "the child failed") << " (status " << st << ")";
  EXPECT_EQ(kAccounts * kOpening - 7, bank_->PgSum());
  EXPECT_EQ(0, Count(Scan(), log::RecordType::kCommit));
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ(0, bank_->SqlitePrepared());
}
#endif

TEST_F(TmTest, ReadOnlyTransactionLogsNothing) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  PQclear(PQexec(xatm_pgconn(tx, "bank"), "SELECT 1"));
  sqlite3_exec(xatm_sqlite(tx, "ledger"), "SELECT 1", 0, 0, 0);
  ASSERT_EQ(XATM_OK, xatm_prepare(tx));
  ASSERT_EQ(XATM_OK, xatm_commit(tx));
  xatm_tx_free(tx);
  EXPECT_EQ(0, Count(Scan(), log::RecordType::kCommit));
}

TEST_F(TmTest, PrepareThenCommit) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  ASSERT_TRUE(TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), 9, 4, 4, 10));
  ASSERT_EQ(XATM_OK, xatm_prepare(tx)) << xatm_errmsg(tm_);
  EXPECT_EQ(1, bank_->PgPrepared());
  EXPECT_EQ(1, bank_->SqlitePrepared());
  EXPECT_EQ(XATM_EINVAL, xatm_prepare(tx));
  EXPECT_EQ(nullptr, xatm_pgconn(tx, "bank2"));
  ASSERT_EQ(XATM_OK, xatm_commit(tx)) << xatm_errmsg(tm_);
  xatm_tx_free(tx);
  ExpectConsistent();
  EXPECT_EQ(std::set<long>{9}, bank_->PgTransfers());
}

TEST_F(TmTest, TwoPostgresRmsInOneClusterAndSqliteInOneTransaction) {
  ScratchDb second;
  PGconn* c = ConnectOrDie(second.conninfo());
  Exec(c, "CREATE TABLE audit (id bigint PRIMARY KEY)");
  tm::TmConfig cfg = bank_->Config();
  tm::RmSpec pg2;
  pg2.name = "audit";
  pg2.type = tm::RmSpec::Type::kPostgres;
  pg2.conninfo = second.conninfo();
  cfg.rms.push_back(pg2);
  // And the same database as "bank" a second time, under another name.
  tm::RmSpec pg3 = cfg.rms[0];
  pg3.name = "bank_again";
  cfg.rms.push_back(pg3);
  xatm_config* xc = nullptr;
  ASSERT_EQ(XATM_OK, xatm_config_new(&xc));
  ASSERT_EQ(XATM_OK, xatm_config_set(xc, "log_dir", cfg.log_dir.c_str()));
  ASSERT_EQ(XATM_OK, xatm_config_set(xc, "log_level", "warn"));
  for (const auto& r : cfg.rms) {
    if (r.type == tm::RmSpec::Type::kPostgres) ASSERT_EQ(XATM_OK, xatm_config_add_pgsql(xc, r.name.c_str(), r.conninfo.c_str()));
    else ASSERT_EQ(XATM_OK, xatm_config_add_sqlite(xc, r.name.c_str(), ("path=" + r.path).c_str()));
  }
  EXPECT_EQ(XATM_ECONFIG, xatm_config_add_pgsql(xc, "audit", "x"));  // duplicate name
  ASSERT_EQ(XATM_OK, xatm_open_config(xc, &tm_)) << xatm_errmsg(tm_);
  xatm_config_free(xc);
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  ASSERT_TRUE(TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), 11, 5, 6, 1));
  PQclear(PQexec(xatm_pgconn(tx, "audit"), "INSERT INTO audit VALUES (11)"));
  PQclear(PQexec(xatm_pgconn(tx, "bank_again"), "UPDATE accounts SET balance = balance - 1 WHERE id = 7"));
  PQclear(PQexec(xatm_pgconn(tx, "bank_again"), "UPDATE accounts SET balance = balance + 1 WHERE id = 8"));
  ASSERT_EQ(XATM_OK, xatm_commit(tx)) << xatm_errmsg(tm_);
  xatm_tx_free(tx);
  EXPECT_EQ("1", Exec(c, "SELECT count(*) FROM audit"));
  PQfinish(c);
  ExpectConsistent();
}

// Transfers on 8 threads while a checker sums both databases again and
// again; total(&sum) gives one sum of both, or false if it could not.
void TmTest::TransfersWhileACheckerWatches(const std::function<bool(long*)>& total) {
  constexpr int kThreads = 8, kEach = 25;
  std::atomic<bool> stop{false};
  std::atomic<int> checks{0}, violations{0}, failures{0};
  std::thread checker([&] {
    while (!stop) {
      long sum = 0;
      if (total(&sum)) {
        checks++;
        if (sum != 2L * kAccounts * kOpening) violations++;
      }
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < kEach; ++i) {
        long id = t * 1000 + i;
        // Money goes both ways: PostgreSQL -> SQLite, and back (negative).
        int amount = static_cast<int>(rng() % 20) - 10;
        int rc = Transfer(id, 1 + static_cast<int>(rng() % kAccounts), 1 + static_cast<int>(rng() % kAccounts), amount);
        if (rc != XATM_OK) failures++;
      }
    });
  }
  for (auto& w : workers) w.join();
  stop = true;
  checker.join();
  EXPECT_EQ(0, failures.load());
  EXPECT_EQ(0, violations.load()) << "of " << checks.load() << " checks";
  EXPECT_GT(checks.load(), 0);
  EXPECT_EQ(static_cast<size_t>(kThreads * kEach), bank_->PgTransfers().size());
  ExpectConsistent();
}

TEST_F(TmTest, ConcurrentTransfersConserveMoneyWhileACheckerWatches) {
  Open(60, kEveryBranchPrepared);
  TransfersWhileACheckerWatches([&](long* sum) {
    // SQLite first: holding its write lock, no transfer's SQLite branch is
    // prepared and uncommitted. Then PostgreSQL's rows FOR SHARE: a transfer
    // whose SQLite branch has committed may still be committing its
    // PostgreSQL one (phase two sends COMMIT PREPARED first and commits
    // SQLite while PostgreSQL runs it), and its prepared rows stay locked
    // until that COMMIT PREPARED is done.
    xatm_tx* tx = nullptr;
    if (xatm_start(tm_, &tx) != XATM_OK) return false;
    sqlite3* db = xatm_sqlite(tx, "ledger");
    PGconn* pg = xatm_pgconn(tx, "bank");
    bool got = false;
    if (db && pg) {
      sqlite3_stmt* st;
      long s = 0;
      sqlite3_prepare_v2(db, "SELECT sum(balance) FROM accounts", -1, &st, nullptr);
      if (sqlite3_step(st) == SQLITE_ROW) s = sqlite3_column_int64(st, 0);
      sqlite3_finalize(st);
      PGresult* r = PQexec(pg, "SELECT sum(balance) FROM (SELECT balance FROM accounts FOR SHARE) a");
      if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        *sum = s + std::stol(PQgetvalue(r, 0, 0));
        got = true;
      }
      PQclear(r);
    }
    xatm_rollback(tx);
    xatm_tx_free(tx);
    return got;
  });
}

// With the default settings the SQLite branch commits first (it holds the
// decision) and PostgreSQL's prepared branch after it, so a consistent reader
// goes the other way: PostgreSQL's rows locked FOR SHARE first (a prepared
// branch's rows stay locked until COMMIT PREPARED, which comes after SQLite's
// commit; a transfer not yet prepared cannot have committed SQLite), then
// SQLite read without its write lock.
TEST_F(TmTest, DefaultSettingsConcurrentTransfersConserveMoneyWhileAPostgresFirstCheckerWatches) {
  Open();
  PGconn* pg = ConnectOrDie(bank_->pg());
  sqlite3* db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open_v2(bank_->sqlite_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr));
  sqlite3_busy_timeout(db, 10000);
  TransfersWhileACheckerWatches([&](long* sum) {
    Exec(pg, "BEGIN");
    PGresult* r = PQexec(pg, "SELECT sum(balance) FROM (SELECT balance FROM accounts FOR SHARE) a");
    const bool pg_ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    const long p = pg_ok ? std::stol(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    sqlite3_stmt* st = nullptr;
    bool got = false;
    if (pg_ok && sqlite3_prepare_v2(db, "SELECT sum(balance) FROM accounts", -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      *sum = p + sqlite3_column_int64(st, 0);
      got = true;
    }
    sqlite3_finalize(st);
    Exec(pg, "COMMIT");
    return got;
  });
  sqlite3_close(db);
  PQfinish(pg);
}

TEST_F(TmTest, BackgroundPhaseTwoFinishesEveryTransferByClose) {
  std::string text = ReadFileOrDie(bank_->WriteConfigFile(60, kEveryBranchPrepared));
  text.replace(text.find("[tm]\n") + 5, 0, "background_phase_two = true\n");
  const std::string config = dir_ / "background.conf";
  WriteFileOrDie(config, text);
  ASSERT_EQ(XATM_OK, xatm_open(config.c_str(), &tm_)) << xatm_errmsg(tm_);
  constexpr int kThreads = 4, kEach = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < kEach; ++i) {
        int amount = static_cast<int>(rng() % 20) - 10;
        if (Transfer(t * 1000 + i, 1 + static_cast<int>(rng() % kAccounts), 1 + static_cast<int>(rng() % kAccounts),
                     amount) != XATM_OK) {
          failures++;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  // Close waits for the branches handed to the background.
  ASSERT_EQ(XATM_OK, xatm_close(tm_));
  tm_ = nullptr;
  EXPECT_EQ(0, failures.load());
  EXPECT_EQ(static_cast<size_t>(kThreads * kEach), bank_->PgTransfers().size());
  ExpectConsistent();
  // Every decision has its END: nothing is left for recovery.
  size_t commits = 0, ends = 0;
  for (const log::LoggedRecord& r : Scan().records) {
    commits += r.type == log::RecordType::kCommit;
    ends += r.type == log::RecordType::kEnd;
  }
  EXPECT_EQ(static_cast<size_t>(kThreads * kEach), commits);
  EXPECT_EQ(commits, ends);
}

TEST_F(TmTest, TimeoutRollsBackAndReleasesLocks) {
  Open(/*timeout_s=*/1);
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  ASSERT_TRUE(TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), 21, 1, 1, 10));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  // Both locks are free again.
  PGconn* c = ConnectOrDie(bank_->pg());
  Exec(c, "SET lock_timeout = '2s'");
  Exec(c, "UPDATE accounts SET balance = balance WHERE id = 1");
  PQfinish(c);
  sqlite3* other = nullptr;
  sqlite3_open(bank_->sqlite_path().c_str(), &other);
  sqlite3_busy_timeout(other, 2000);
  EXPECT_EQ(SQLITE_OK, sqlite3_exec(other, "UPDATE accounts SET balance = balance WHERE id = 1", 0, 0, 0));
  sqlite3_close(other);
  EXPECT_EQ(XATM_ETIMEDOUT, xatm_commit(tx));
  xatm_tx_free(tx);
  ExpectConsistent();
  EXPECT_TRUE(bank_->PgTransfers().empty());
}

TEST_F(TmTest, BadConfigurationIsAClearErrorAndNoHalfOpenTm) {
  const std::string path = dir_ / "bad.conf";
  auto write = [&](const std::string& text) {
    FILE* f = std::fopen(path.c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  struct Case {
    std::string text;
    int rc;
    std::string says;
  } cases[] = {
      {"[tm]\nlog_dir = " + bank_->log_dir() + "\ncolour = blue\n", XATM_ECONFIG, "unknown key \"colour\""},
      {"[rm.x]\ntype = sqlite\npath = /tmp/x.db\n", XATM_ECONFIG, "[tm] section is missing"},
      {"[tm]\nlog_dir = " + bank_->log_dir() + "\n[rm.a]\ntype = sqlite\npath = /tmp/a.db\n[rm.a]\ntype = sqlite\npath = /tmp/b.db\n",
       XATM_ECONFIG, "appears twice"},
      {"[tm]\nlog_dir = " + bank_->log_dir() + "\n[rm.a]\ntype = oracle\n", XATM_ECONFIG, "type must be postgresql, sqlite or mysql"},
      {"[tm]\nlog_dir = " + bank_->log_dir() + "\ntimeout_s = soon\n", XATM_ECONFIG, "timeout_s"},
      {"[tm]\nlog_dir = " + bank_->log_dir() + "\n[rm.pg]\ntype = postgresql\nconninfo = host=/nonexistent password=hunter2\n",
       XATM_ERM, "\"pg\""},
      {"[tm]\nlog_dir = " + dir_.path() + "/missing\n", XATM_ELOG, "does not exist"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    write(c.text);
    xatm* h = nullptr;
    EXPECT_EQ(c.rc, xatm_open(path.c_str(), &h));
    ASSERT_NE(nullptr, h);
    std::string m = xatm_errmsg(h);
    EXPECT_NE(std::string::npos, m.find(c.says)) << m;
    EXPECT_EQ(std::string::npos, m.find("hunter2")) << m;
    xatm_tx* tx = nullptr;
    EXPECT_EQ(XATM_EINVAL, xatm_start(h, &tx));
    EXPECT_EQ(XATM_OK, xatm_close(h));
  }
  // Comments anywhere, as in the README's sample.
  write("# xatm\n[tm]   # the TM\nlog_dir = " + bank_->log_dir() + "   # the log\n; another comment\n");
  xatm* ok = nullptr;
  EXPECT_EQ(XATM_OK, xatm_open(path.c_str(), &ok)) << xatm_errmsg(ok);
  xatm_close(ok);
  // The line number is given.
  write("[tm]\nlog_dir = " + bank_->log_dir() + "\n\ntimeout_s = 0\n");
  xatm* h = nullptr;
  EXPECT_EQ(XATM_ECONFIG, xatm_open(path.c_str(), &h));
  EXPECT_NE(std::string::npos, std::string(xatm_errmsg(h)).find(path + ":4")) << xatm_errmsg(h);
  xatm_close(h);
}

TEST_F(TmTest, SecondProcessOnTheSameLogIsRefused) {
  Open();
  xatm* second = nullptr;
  EXPECT_EQ(XATM_EBUSY, xatm_open(bank_->WriteConfigFile().c_str(), &second));
  EXPECT_NE(std::string::npos, std::string(xatm_errmsg(second)).find("in use by process"));
  xatm_close(second);
}

TEST_F(TmTest, UnknownRmAndWrongTypeAreRefused) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  EXPECT_EQ(nullptr, xatm_pgconn(tx, "nope"));
  EXPECT_NE(std::string::npos, std::string(xatm_errmsg(tm_)).find("configured: bank, ledger"));
  EXPECT_EQ(nullptr, xatm_sqlite(tx, "bank"));
  EXPECT_NE(std::string::npos, std::string(xatm_errmsg(tm_)).find("postgresql"));
  EXPECT_EQ(XATM_ENOTFOUND, xatm_join(tx, "nope"));
  XID x;
  ASSERT_EQ(XATM_OK, xatm_tx_xid(tx, &x));
  EXPECT_EQ(tm::kFormatId, x.formatID);
  EXPECT_EQ(20, x.gtrid_length);
  xatm_tx_free(tx);
}

}  // namespace
}  // namespace xtm::test
