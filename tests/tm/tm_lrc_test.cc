// Last-resource commit: the SQLite branch commits last, in one phase, with
// the decision row inside its own transaction; no decision-log record.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "log/decision_log.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

class LastResource : public ::testing::Test {
 protected:
  void SetUp() override {
    bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path());
    config_ = bank_->WriteConfigFile();
    std::ifstream in(config_);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    text.replace(text.find("[tm]\n") + 5, 0, "last_resource_commit = true\n");
    std::ofstream(config_, std::ios::trunc) << text;
  }
  void TearDown() override { xatm_close(tm_); }
  void Open() { ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm_)) << xatm_errmsg(tm_); }
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
}

TEST_F(LastResource, PostgresVotingNoRollsBackTheLastResourceToo) {
  Open();
  xatm_tx* tx = nullptr;
  ASSERT_EQ(XATM_OK, xatm_start(tm_, &tx));
  PGconn* pg = xatm_pgconn(tx, "bank");
  sqlite3* db = xatm_sqlite(tx, "ledger");
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, "UPDATE accounts SET balance = balance + 5000 WHERE id = 3", 0, 0, 0));
  PQclear(PQexec(pg, "UPDATE accounts SET balance = balance - 5000 WHERE id = 3"));  // CHECK fails
  EXPECT_EQ(XATM_EROLLEDBACK, xatm_commit(tx));
  xatm_tx_free(tx);
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

#ifdef XATM_FAULT_INJECTION

// A transfer in a child that dies at crash point `at`.
void CrashingTransfer(const std::string& config, const char* at, long id) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("XATM_CRASH_AT", at, 1);
    xatm* tm = nullptr;
    if (xatm_open(config.c_str(), &tm) != XATM_OK) ::_exit(2);
    xatm_tx* tx = nullptr;
    xatm_start(tm, &tx);
    PGconn* pg = xatm_pgconn(tx, "bank");
    sqlite3* db = xatm_sqlite(tx, "ledger");
    TransferStatements(pg, db, id, 5, 5, 10);
    xatm_commit(tx);
    ::_exit(3);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFSIGNALED(st)) << "the child did not die at " << at;
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

#endif

}  // namespace
}  // namespace xtm::test
