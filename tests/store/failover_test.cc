// The decision store's PostgreSQL fails over: a primary with a synchronous
// standby (pg_basebackup -R, named in synchronous_standby_names), a worker
// (four threads) doing two-database transfers in the classic protocol with its decisions on
// that pair, the primary killed (immediate shutdown) at a random moment and
// the standby promoted. Every transfer acknowledged XATM_OK is complete on
// both databases, none refused is on either, nothing is left prepared after
// recovery, and the TM goes on through the multi-host conninfo by itself.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "support/pg_cluster.h"
#include "support/temp_dir.h"
#include "support/xatmd_process.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

std::string Query(const std::string& conninfo, const std::string& sql) {
  PGconn* c = ConnectOrDie(conninfo);
  const std::string v = Exec(c, sql);
  PQfinish(c);
  return v;
}

class StoreFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override { bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path()); }

  std::string Config(const std::string& store_conninfo, const std::string& synchronous_commit) {
    const std::string text = ReplaceEveryBranchPrepared(
        ReadFileOrDie(bank_->WriteConfigFile(60, kEveryBranchPrepared)),
        "last_resource_commit = false\nlog_store = postgresql\nlog_conninfo = " + store_conninfo +
            "\nlease_s = 10\nlog_synchronous_commit = " + synchronous_commit + "\n");
    const std::string path = dir_ / "failover.conf";
    WriteFileOrDie(path, text);
    return path;
  }

  // *why: what failed, if something did.
  int Transfer(xatm* tm, long id, std::string* why) {
    xatm_tx* tx = nullptr;
    int rc = xatm_start(tm, &tx);
    if (rc != XATM_OK) {
      *why = std::string("xatm_start: ") + xatm_errmsg(tm);
      return rc;
    }
    PGconn* pg = xatm_pgconn(tx, "bank");
    sqlite3* db = pg ? xatm_sqlite(tx, "ledger") : nullptr;
    if (pg == nullptr || db == nullptr) {
      *why = std::string("joining a branch: ") + xatm_errmsg(tm);
      rc = XATM_ERROR;
    } else if (!TransferStatements(pg, db, id, static_cast<int>(id % kAccounts) + 1,
                                   static_cast<int>((id + 1) % kAccounts) + 1, 1)) {
      *why = std::string("statements: ") + PQerrorMessage(pg) + " / " + sqlite3_errmsg(db);
      rc = XATM_ERROR;
    } else {
      rc = xatm_commit(tx);
      if (rc != XATM_OK) *why = std::string("xatm_commit: ") + xatm_errmsg(tm);
    }
    if (rc != XATM_OK) xatm_rollback(tx);  // a no-op once the transaction is finished
    xatm_tx_free(tx);
    return rc;
  }

  ScratchDb db_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
};

TEST_F(StoreFailoverTest, AcknowledgedDecisionsSurviveThePrimarysLossAndTheTmReconnects) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::map<long, int> outcome;  // transfer id -> what xatm_commit returned
  long next_id = 1;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    OwnCluster primary;
    OwnCluster standby(primary, "s1");
    ASSERT_TRUE(WaitFor(
        [&] {
          return Query(primary.conninfo(), "SELECT count(*) FROM pg_stat_replication WHERE application_name = 's1' "
                                           "AND state = 'streaming'") == "1";
        },
        30));
    Query(primary.conninfo(), "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (s1)'");
    Query(primary.conninfo(), "SELECT pg_reload_conf()");
    ASSERT_TRUE(WaitFor(
        [&] { return Query(primary.conninfo(), "SELECT sync_state FROM pg_stat_replication") == "sync"; }, 30));
    const std::string store = "host=" + primary.dir() + "," + standby.dir() + " port=" +
                              std::to_string(primary.port()) + "," + std::to_string(standby.port()) +
                              " user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2";
    // The last round waits for the standby to apply each decision too.
    const std::string config = Config(store, round == 2 ? "remote_apply" : "on");
    xatm* tm = nullptr;
    ASSERT_EQ(XATM_OK, xatm_open(config.c_str(), &tm)) << xatm_errmsg(tm);

    std::atomic<bool> stop{false}, promoted{false};
    std::atomic<int> ok_after_promotion{0};
    std::atomic<int> errors_shown{0};
    std::mutex mu;
    // Four workers: batches of several decisions are in flight when the
    // primary dies.
    auto work = [&] {
      while (!stop) {
        long id;
        {
          std::lock_guard<std::mutex> l(mu);
          id = next_id++;
        }
        const bool after = promoted;
        std::string why;
        const int rc = Transfer(tm, id, &why);
        {
          std::lock_guard<std::mutex> l(mu);
          outcome[id] = rc;
        }
        if (rc == XATM_OK && after) ++ok_after_promotion;
        if (rc != XATM_OK && errors_shown < 10) {
          ++errors_shown;
          std::fprintf(stderr, "transfer %ld: %d %s\n", id, rc, why.c_str());
        }
        if (rc != XATM_OK) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    };
    std::vector<std::thread> workers;
    for (int i = 0; i < 4; ++i) workers.emplace_back(work);
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(200, 1500)(rng)));
    primary.Stop("immediate");
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 1000)(rng)));
    standby.Promote();
    promoted = true;
    // The TM finds the new primary by itself and commits again.
    EXPECT_TRUE(WaitFor([&] { return ok_after_promotion >= 5; }, 60)) << "no commits after the promotion";
    stop = true;
    for (std::thread& w : workers) w.join();
    ASSERT_EQ(XATM_OK, xatm_close(tm));
    // Recovery by the node's next incarnation settles what was in doubt.
    ASSERT_EQ(XATM_OK, xatm_open(config.c_str(), &tm)) << xatm_errmsg(tm);
    ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0 && bank_->SqlitePrepared() == 0; }, 30))
        << bank_->PgPrepared() << " PostgreSQL and " << bank_->SqlitePrepared() << " SQLite branches still prepared";
    ASSERT_EQ(XATM_OK, xatm_close(tm));
    // Nothing acknowledged is lost on the promoted standby.
    EXPECT_EQ("0", Query(standby.conninfo(), "SELECT count(*) FROM xatm.record WHERE type = 2"));
  }
  const std::set<long> pg = bank_->PgTransfers(), sq = bank_->SqliteTransfers();
  EXPECT_EQ(pg, sq) << "a transfer is on one side only";
  EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
  std::map<int, int> counts;
  for (const auto& [id, rc] : outcome) {
    ++counts[rc];
    if (rc == XATM_OK || rc == XATM_EPENDING) {  // EPENDING: decided, phase two left to recovery
      EXPECT_EQ(1u, pg.count(id)) << "transfer " << id << " was acknowledged but is not committed";
    } else if (rc != XATM_EUNKNOWN) {
      // Refused before or at the commit point: rolled back, never half done.
      EXPECT_EQ(0u, pg.count(id)) << "transfer " << id << " returned " << rc << " but is committed";
    }
  }
  for (const auto& [rc, n] : counts) std::fprintf(stderr, "xatm_commit %d: %d transfer(s)\n", rc, n);
  EXPECT_GT(counts[XATM_OK], 15);
}

}  // namespace
}  // namespace xtm::test
