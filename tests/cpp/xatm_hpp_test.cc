// The C++ interface (xatm.hpp) on a real PostgreSQL database and a real
// SQLite file: what commits, what throws, and that an unfinished Transaction
// rolls back when it goes.
#include "xatm/xatm.hpp"

#include <gtest/gtest.h>

#include <type_traits>

#include "tm/bank.h"

namespace xtm::test {
namespace {

static_assert(!std::is_copy_constructible_v<xatmpp::TransactionManager>);
static_assert(!std::is_copy_constructible_v<xatmpp::Transaction>);
static_assert(std::is_nothrow_move_constructible_v<xatmpp::Transaction>);
static_assert(std::is_base_of_v<std::runtime_error, xatmpp::Error>);

class XatmHpp : public ::testing::Test {
 protected:
  void SetUp() override { bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path()); }
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

TEST_F(XatmHpp, ATransferCommitsOnBoth) {
  xatmpp::TransactionManager tm(bank_->WriteConfigFile());
  xatmpp::Transaction tx = tm.begin();
  ASSERT_TRUE(TransferStatements(tx.pg("bank"), tx.sqlite("ledger"), 1, 1, 2, 10));
  EXPECT_EQ(tx.pg("bank"), tx.pg("bank"));  // the same branch, the same handle
  const XID x = tx.xid();
  EXPECT_GT(x.gtrid_length, 0);
  tx.commit();
  EXPECT_EQ(1u, bank_->PgTransfers().count(1));
  ExpectConsistent();
}

TEST_F(XatmHpp, ATransactionDestroyedUnfinishedRollsBack) {
  xatmpp::TransactionManager tm(bank_->WriteConfigFile());
  {
    xatmpp::Transaction tx = tm.begin();
    ASSERT_TRUE(TransferStatements(tx.pg("bank"), tx.sqlite("ledger"), 2, 1, 2, 10));
    // an early return, an exception: no commit()
  }
  EXPECT_TRUE(bank_->PgTransfers().empty());
  ExpectConsistent();
  // The rows are free again: the next transaction writes them at once.
  xatmpp::Transaction tx = tm.begin();
  ASSERT_TRUE(TransferStatements(tx.pg("bank"), tx.sqlite("ledger"), 3, 1, 2, 10));
  tx.commit();
  ExpectConsistent();
}

TEST_F(XatmHpp, FailuresThrowWithTheCApisCode) {
  try {
    xatmpp::TransactionManager bad(dir_.path() + "/no-such.conf");
    FAIL() << "opened a missing configuration";
  } catch (const xatmpp::Error& e) {
    EXPECT_EQ(XATM_ECONFIG, e.code());
    EXPECT_NE(std::string::npos, std::string(e.what()).find("no-such.conf")) << e.what();
  }
  xatmpp::TransactionManager tm(bank_->WriteConfigFile());
  xatmpp::Transaction tx = tm.begin();
  try {
    tx.pg("nope");
    FAIL() << "joined an RM that is not configured";
  } catch (const xatmpp::Error& e) {
    EXPECT_EQ(XATM_ENOTFOUND, e.code()) << e.what();
  }
  try {
    tx.pg("ledger");  // a SQLite RM
    FAIL() << "got a PGconn of a SQLite RM";
  } catch (const xatmpp::Error& e) {
    EXPECT_EQ(XATM_EINVAL, e.code()) << e.what();
    EXPECT_NE(std::string::npos, std::string(e.what()).find("sqlite")) << e.what();
  }
  // A transfer that breaks PostgreSQL's CHECK: commit throws, nothing committed.
  PQclear(PQexec(tx.pg("bank"), "UPDATE accounts SET balance = balance - 100000 WHERE id = 1"));
  sqlite3_exec(tx.sqlite("ledger"), "UPDATE accounts SET balance = balance + 1 WHERE id = 1", nullptr, nullptr, nullptr);
  try {
    tx.commit();
    FAIL() << "committed a transfer PostgreSQL refused";
  } catch (const xatmpp::Error& e) {
    EXPECT_EQ(XATM_EROLLEDBACK, e.code()) << e.what();
    EXPECT_TRUE(e.rolled_back());
    EXPECT_FALSE(e.heuristic());
    EXPECT_FALSE(e.committed());
  }
  ExpectConsistent();
  try {
    tx.commit();  // already finished
    FAIL();
  } catch (const xatmpp::Error& e) {
    EXPECT_EQ(XATM_EINVAL, e.code());
  }
}

TEST_F(XatmHpp, PrepareThenCommitAndMovesKeepOwnership) {
  xatmpp::TransactionManager tm(bank_->WriteConfigFile(60, kEveryBranchPrepared));
  xatmpp::Transaction tx = tm.begin();
  ASSERT_TRUE(TransferStatements(tx.pg("bank"), tx.sqlite("ledger"), 4, 1, 2, 10));
  tx.prepare();
  EXPECT_EQ(1, bank_->PgPrepared());
  xatmpp::Transaction moved = std::move(tx);
  EXPECT_THROW(tx.commit(), xatmpp::Error);  // NOLINT: the moved-from one is empty
  moved.commit();
  EXPECT_EQ(1u, bank_->PgTransfers().count(4));
  xatmpp::TransactionManager other = std::move(tm);
  EXPECT_TRUE(other.in_doubt().empty());
  other.recover();
  EXPECT_THROW(tm.begin(), xatmpp::Error);  // NOLINT
  ExpectConsistent();
}

// The manager goes first: its transaction still commits, and the manager
// closes with it (no leak under the sanitizers, nothing left open).
TEST_F(XatmHpp, ATransactionOutlivingItsManagerStillCommitsAndClosesIt) {
  std::unique_ptr<xatmpp::Transaction> tx;
  {
    xatmpp::TransactionManager tm(bank_->WriteConfigFile());
    tx = std::make_unique<xatmpp::Transaction>(tm.begin());
  }
  ASSERT_TRUE(TransferStatements(tx->pg("bank"), tx->sqlite("ledger"), 5, 1, 2, 10));
  tx->commit();
  tx.reset();
  EXPECT_EQ(1u, bank_->PgTransfers().count(5));
  // Closed: the log is free for another manager at once.
  xatmpp::TransactionManager again(bank_->WriteConfigFile());
  ExpectConsistent();
}

TEST_F(XatmHpp, CloseSaysWhenATransactionIsStillAlive) {
  xatmpp::TransactionManager tm(bank_->WriteConfigFile());
  {
    xatmpp::Transaction tx = tm.begin();
    try {
      tm.close();
      FAIL() << "closed under a live transaction";
    } catch (const xatmpp::Error& e) {
      EXPECT_EQ(XATM_EINVAL, e.code());
    }
  }
  tm.close();
  tm.close();  // closed: nothing to do
  EXPECT_THROW(tm.begin(), xatmpp::Error);
}

}  // namespace
}  // namespace xtm::test
