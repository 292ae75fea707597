// The X/Open TX interface (tx.h) on a real PostgreSQL database and a real
// SQLite file: every state-table transition and return code, chained
// transactions, TX_COMMIT_DECISION_LOGGED, timeouts, calls out of sequence,
// and one transaction per thread.
#include "xatm/tx.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "support/fork_child.h"
#include "support/xatmd_process.h"
#include "tm/bank.h"

namespace xtm::test {
namespace {

class TxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path());
    ::setenv("XATM_CONFIG", bank_->WriteConfigFile(60).c_str(), 1);
  }
  void TearDown() override {
    tx_rollback();
    tx_close();
    ::unsetenv("XATM_CONFIG");
  }
  // One transfer inside the thread's current transaction.
  static bool Statements(long id, int amount = 10) {
    PGconn* pg = xatm_tx_pgconn("bank");
    sqlite3* db = xatm_tx_sqlite("ledger");
    return pg != nullptr && db != nullptr && TransferStatements(pg, db, id, 1, 2, amount);
  }
  void ExpectConsistent() {
    EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
    EXPECT_EQ(bank_->PgTransfers(), bank_->SqliteTransfers());
    EXPECT_EQ(0, bank_->PgPrepared());
    EXPECT_EQ(0, bank_->SqlitePrepared());
  }
  ScratchDb db_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
};

TEST_F(TxTest, EveryCallOutOfSequenceIsAProtocolError) {
  TXINFO info;
  // S0: not open.
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_begin());
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_commit());
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_rollback());
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_info(&info));
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_set_commit_return(TX_COMMIT_COMPLETED));
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_set_transaction_control(TX_CHAINED));
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_set_transaction_timeout(5));
  EXPECT_EQ(TX_OK, tx_close());  // closing what is not open
  EXPECT_EQ(nullptr, xatm_tx_pgconn("bank"));
  // S1: open, no transaction.
  ASSERT_EQ(TX_OK, tx_open()) << xatm_tx_errmsg();
  EXPECT_EQ(TX_OK, tx_open());  // again: nothing changes
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_commit());
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_rollback());
  EXPECT_NE(std::string::npos, std::string(xatm_tx_errmsg()).find("outside a transaction"));
  EXPECT_EQ(nullptr, xatm_tx_pgconn("bank"));
  EXPECT_EQ(0, tx_info(&info));
  EXPECT_EQ(-1, info.xid.formatID);  // the null XID
  // Bad arguments in any open state.
  EXPECT_EQ(TX_EINVAL, tx_set_commit_return(7));
  EXPECT_EQ(TX_EINVAL, tx_set_transaction_control(3));
  EXPECT_EQ(TX_EINVAL, tx_set_transaction_timeout(-1));
  // S3: in a transaction.
  ASSERT_EQ(TX_OK, tx_begin()) << xatm_tx_errmsg();
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_begin());  // one transaction per thread
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_close());
  EXPECT_EQ(TX_OK, tx_open());
  EXPECT_EQ(1, tx_info(nullptr));
  EXPECT_EQ(nullptr, xatm_tx_pgconn("ledger"));  // a SQLite RM
  EXPECT_NE(std::string::npos, std::string(xatm_tx_errmsg()).find("sqlite")) << xatm_tx_errmsg();
  EXPECT_EQ(nullptr, xatm_tx_pgconn("nope"));
  EXPECT_EQ(TX_OK, tx_rollback());
  EXPECT_EQ(TX_OK, tx_close());
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_begin());
}

TEST_F(TxTest, OpenWithoutAConfigurationFailsSayingWhatToSet) {
  ::unsetenv("XATM_CONFIG");
  EXPECT_EQ(TX_FAIL, tx_open());
  EXPECT_NE(std::string::npos, std::string(xatm_tx_errmsg()).find("XATM_CONFIG"));
  ::setenv("XATM_CONFIG", (dir_.path() + "/missing.conf").c_str(), 1);
  EXPECT_EQ(TX_FAIL, tx_open());
  EXPECT_NE(std::string::npos, std::string(xatm_tx_errmsg()).find("missing.conf")) << xatm_tx_errmsg();
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_begin());
}

TEST_F(TxTest, CommitAndRollbackAcrossBoth) {
  ASSERT_EQ(TX_OK, tx_open()) << xatm_tx_errmsg();
  ASSERT_EQ(TX_OK, tx_begin());
  ASSERT_TRUE(Statements(1));
  TXINFO info;
  ASSERT_EQ(1, tx_info(&info));
  EXPECT_GT(info.xid.gtrid_length, 0);
  EXPECT_EQ(TX_ACTIVE, info.transaction_state);
  EXPECT_EQ(TX_COMMIT_COMPLETED, info.when_return);
  EXPECT_EQ(TX_UNCHAINED, info.transaction_control);
  EXPECT_EQ(60, info.transaction_timeout);  // the configuration's timeout_s
  EXPECT_EQ(TX_OK, tx_commit()) << xatm_tx_errmsg();
  EXPECT_EQ(0, tx_info(&info));
  EXPECT_EQ(1u, bank_->PgTransfers().count(1));

  ASSERT_EQ(TX_OK, tx_begin());
  ASSERT_TRUE(Statements(2));
  EXPECT_EQ(TX_OK, tx_rollback());
  EXPECT_EQ(0u, bank_->PgTransfers().count(2));
  // A branch that fails its CHECK: the whole transaction rolls back.
  ASSERT_EQ(TX_OK, tx_begin());
  PQclear(PQexec(xatm_tx_pgconn("bank"), "UPDATE accounts SET balance = balance - 100000 WHERE id = 1"));
  sqlite3_exec(xatm_tx_sqlite("ledger"), "UPDATE accounts SET balance = balance + 1 WHERE id = 1", nullptr, nullptr,
               nullptr);
  EXPECT_EQ(TX_ROLLBACK, tx_commit());
  EXPECT_NE(std::string(""), xatm_tx_errmsg());
  EXPECT_EQ(0, tx_info(nullptr));
  ExpectConsistent();
}

TEST_F(TxTest, ChainedTransactionsBeginTheNextAtCommitAndRollback) {
  ASSERT_EQ(TX_OK, tx_open());
  ASSERT_EQ(TX_OK, tx_set_transaction_control(TX_CHAINED));
  ASSERT_EQ(TX_OK, tx_begin());
  TXINFO first, second;
  ASSERT_EQ(1, tx_info(&first));
  ASSERT_TRUE(Statements(3));
  EXPECT_EQ(TX_OK, tx_commit());
  ASSERT_EQ(1, tx_info(&second));  // a new one has begun
  EXPECT_NE(0, std::memcmp(first.xid.data, second.xid.data, static_cast<size_t>(first.xid.gtrid_length)));
  EXPECT_EQ(TX_CHAINED, second.transaction_control);
  ASSERT_TRUE(Statements(4));
  EXPECT_EQ(TX_OK, tx_rollback());
  EXPECT_EQ(1, tx_info(nullptr));  // and again
  ASSERT_TRUE(Statements(5));
  EXPECT_EQ(TX_OK, tx_set_transaction_control(TX_UNCHAINED));
  EXPECT_EQ(TX_OK, tx_commit());
  EXPECT_EQ(0, tx_info(nullptr));
  EXPECT_EQ((std::set<long>{3, 5}), bank_->PgTransfers());
  ExpectConsistent();
}

#ifdef XATM_FAULT_INJECTION
// A chained commit whose next transaction cannot begin (a fault at the
// second begin): the commit's code plus TX_NO_BEGIN, and the thread is
// outside any transaction; the same for a rollback.
TEST_F(TxTest, AChainedCommitWhoseNextTransactionCannotBeginSaysNoBegin) {
  ::setenv("XATM_FAULT_AT", "tm.begin:2", 1);
  ASSERT_EQ(TX_OK, tx_open()) << xatm_tx_errmsg();
  ASSERT_EQ(TX_OK, tx_set_transaction_control(TX_CHAINED));
  ASSERT_EQ(TX_OK, tx_begin());
  ASSERT_TRUE(Statements(6));
  EXPECT_EQ(TX_NO_BEGIN, tx_commit()) << xatm_tx_errmsg();  // TX_OK + TX_NO_BEGIN
  EXPECT_NE(std::string::npos, std::string(xatm_tx_errmsg()).find("could not begin")) << xatm_tx_errmsg();
  EXPECT_EQ(0, tx_info(nullptr));
  EXPECT_EQ(1u, bank_->PgTransfers().count(6));
  EXPECT_EQ(TX_PROTOCOL_ERROR, tx_commit());
  // A commit that rolls back (PostgreSQL's CHECK), its next begin failing:
  // TX_ROLLBACK + TX_NO_BEGIN. (Another text of the same point and count
  // restarts the count: this begin is 1, the chained one 2.)
  ::setenv("XATM_FAULT_AT", "tm.begin:02", 1);
  ASSERT_EQ(TX_OK, tx_begin());
  PQclear(PQexec(xatm_tx_pgconn("bank"), "UPDATE accounts SET balance = balance - 100000 WHERE id = 1"));
  EXPECT_EQ(TX_ROLLBACK_NO_BEGIN, tx_commit()) << xatm_tx_errmsg();
  EXPECT_EQ(0, tx_info(nullptr));
  ::unsetenv("XATM_FAULT_AT");
  ExpectConsistent();
}
#endif

TEST_F(TxTest, ATransactionOutlivingItsTimeoutIsRolledBackAndReportedSo) {
  ASSERT_EQ(TX_OK, tx_open());
  ASSERT_EQ(TX_OK, tx_set_transaction_timeout(1));
  ASSERT_EQ(TX_OK, tx_begin());
  ASSERT_TRUE(Statements(7));
  TXINFO info;
  ASSERT_EQ(1, tx_info(&info));
  EXPECT_EQ(1, info.transaction_timeout);
  ASSERT_TRUE(WaitFor([] {
    TXINFO i;
    return tx_info(&i) == 1 && i.transaction_state == TX_TIMEOUT_ROLLBACK_ONLY;
  }, 10));
  // Its locks are gone before the owner comes back.
  PGconn* c = ConnectOrDie(db_.conninfo());
  Exec(c, "SET lock_timeout = '5s'");
  Exec(c, "UPDATE accounts SET balance = balance WHERE id = 1");
  PQfinish(c);
  EXPECT_EQ(TX_ROLLBACK, tx_commit());
  EXPECT_NE(std::string::npos, std::string(xatm_tx_errmsg()).find("timeout")) << xatm_tx_errmsg();
  // 0: no timeout.
  ASSERT_EQ(TX_OK, tx_set_transaction_timeout(0));
  ASSERT_EQ(TX_OK, tx_begin());
  ASSERT_TRUE(Statements(8));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_EQ(1, tx_info(&info));
  EXPECT_EQ(TX_ACTIVE, info.transaction_state);
  EXPECT_EQ(TX_OK, tx_commit());
  EXPECT_EQ((std::set<long>{8}), bank_->PgTransfers());
  ExpectConsistent();
}

#ifdef XATM_FAULT_INJECTION
// TX_COMMIT_DECISION_LOGGED returns once the decision is durable, handing
// PostgreSQL's phase two to the TM's threads; TX_COMMIT_COMPLETED does it
// before returning. A crash point on the hand-off tells which path ran; in
// both cases recovery leaves the transfer on both sides.
TEST_F(TxTest, DecisionLoggedHandsPhaseTwoOffAndCompletedDoesNot) {
  for (COMMIT_RETURN when : {TX_COMMIT_DECISION_LOGGED, TX_COMMIT_COMPLETED}) {
    SCOPED_TRACE(when);
    const long id = 10 + when;
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::setenv("XATM_CRASH_AT", "tm.lrc.handed_off", 1);
      if (tx_open() != TX_OK || tx_set_commit_return(when) != TX_OK || tx_begin() != TX_OK || !Statements(id)) {
        ::_exit(2);
      }
      const int rc = tx_commit();
      ::_exit(rc == TX_OK && tx_close() == TX_OK ? 0 : 3);
    }
    const int code = WaitChild(pid);
    if (when == TX_COMMIT_DECISION_LOGGED) {
      EXPECT_EQ(128 + SIGKILL, code) << "no hand-off to the phase-two threads";
    } else {
      EXPECT_EQ(0, code) << "tx_commit did not finish phase two itself";
    }
    ASSERT_EQ(TX_OK, tx_open()) << xatm_tx_errmsg();  // recovery
    ASSERT_EQ(TX_OK, tx_close());
    EXPECT_EQ(1u, bank_->PgTransfers().count(id));
    ExpectConsistent();
  }
}
#endif

TEST_F(TxTest, EachThreadHasItsOwnTransaction) {
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    ts.emplace_back([&, i] {
      if (tx_open() != TX_OK) return;
      for (int k = 0; k < 10; ++k) {
        if (tx_begin() == TX_OK && Statements(100 + i * 10 + k, 1) && tx_commit() == TX_OK) ++ok;
      }
      tx_close();
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(40, ok.load());
  EXPECT_EQ(40u, bank_->PgTransfers().size());
  ExpectConsistent();
}

}  // namespace
}  // namespace xtm::test
