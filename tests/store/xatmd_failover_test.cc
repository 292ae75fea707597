// Active/passive xatmd on one PostgreSQL decision store: two servers with the
// same node_name, each listening on its own address of [tm] server = A,B. One
// leads; the other stands by, not listening. The leader SIGKILLed under load
// (or frozen past its lease): the other takes the node over, resolves what the
// first left, and serves; the client goes on through it by itself. Nothing
// acknowledged is lost, nothing refused is committed, nothing stays prepared.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "support/pg_cluster.h"
#include "support/temp_dir.h"
#include "support/xatmd_process.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

class XatmdFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path());
    std::string text = ReplaceEveryBranchPrepared(
        ReadFileOrDie(bank_->WriteConfigFile(60, kEveryBranchPrepared)),
        "last_resource_commit = false\nlog_store = postgresql\nlog_conninfo = " + store_.conninfo() +
            "\nlease_s = 2\nserver = unix:" + (dir_ / "a.sock") + ",unix:" + (dir_ / "b.sock") + "\n");
    text.replace(text.find("log_level = warn"), 16, "log_level = info");
    text.replace(text.find("node_name = test"), 16, "node_name = pair");
    text += "\n[server]\nclient_timeout_s = 2\nrecovery_interval_s = 1\nmetrics = off\n";
    client_ = dir_ / "client.conf";
    WriteFileOrDie(client_, text);
    for (const char* s : {"a", "b"}) {
      WriteFileOrDie(dir_ / (std::string(s) + ".conf"), text + "listen = unix:" + (dir_ / (std::string(s) + ".sock")) + "\n");
    }
  }

  // Transfers by `threads` threads of one client TM until stop; each one's
  // outcome in outcome_.
  void Work(xatm* tm, int threads, std::atomic<bool>* stop, std::atomic<int>* ok) {
    for (int t = 0; t < threads; ++t) {
      workers_.emplace_back([this, tm, stop, ok] {
        while (!*stop) {
          long id;
          {
            std::lock_guard<std::mutex> l(mu_);
            id = next_id_++;
          }
          int rc = XATM_ERROR;
          xatm_tx* tx = nullptr;
          if (xatm_start(tm, &tx) == XATM_OK) {
            PGconn* pg = xatm_pgconn(tx, "bank");
            sqlite3* db = pg ? xatm_sqlite(tx, "ledger") : nullptr;
            if (pg && db &&
                TransferStatements(pg, db, id, static_cast<int>(id % kAccounts) + 1,
                                   static_cast<int>((id + 3) % kAccounts) + 1, 1)) {
              rc = xatm_commit(tx);
            }
            if (rc != XATM_OK) xatm_rollback(tx);
            xatm_tx_free(tx);
          }
          {
            std::lock_guard<std::mutex> l(mu_);
            outcome_[id] = rc;
          }
          if (rc == XATM_OK) ++*ok;
          else std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      });
    }
  }
  // a leads, b stands by; a client of them commits 50 transfers, and goes on.
  void LeadAndWork(XatmdProcess& a, XatmdProcess& b, xatm** tm, std::atomic<bool>* stop, std::atomic<int>* ok) {
    a.Start();
    b.StartUntil("standing by");
    ASSERT_EQ(XATM_OK, xatm_open(client_.c_str(), tm)) << xatm_errmsg(*tm);
    Work(*tm, 4, stop, ok);
    ASSERT_TRUE(WaitFor([&] { return *ok >= 50; }, 30)) << a.Log();
  }
  void Join() {
    for (std::thread& w : workers_) w.join();
    workers_.clear();
  }

  // One transfer through tm; what xatm_commit returned (XATM_ERROR if the
  // statements failed).
  int Transfer(xatm* tm, long id) {
    xatm_tx* tx = nullptr;
    int rc = xatm_start(tm, &tx);
    if (rc != XATM_OK) return rc;
    rc = TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), id, 3, 4, 1) ? xatm_commit(tx)
                                                                                               : XATM_ERROR;
    if (rc != XATM_OK) xatm_rollback(tx);
    xatm_tx_free(tx);
    return rc;
  }

  // Every acknowledged transfer is on both sides, none refused on either,
  // nothing prepared.
  void ExpectAtomic() {
    ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0 && bank_->SqlitePrepared() == 0; }, 30))
        << bank_->PgPrepared() << " PostgreSQL and " << bank_->SqlitePrepared() << " SQLite branches prepared";
    const std::set<long> pg = bank_->PgTransfers(), sq = bank_->SqliteTransfers();
    EXPECT_EQ(pg, sq);
    for (long id : pg) {
      if (!sq.count(id)) ADD_FAILURE() << "transfer " << id << " (xatm_commit " << outcome_[id] << ") on PostgreSQL only";
    }
    for (long id : sq) {
      if (!pg.count(id)) ADD_FAILURE() << "transfer " << id << " (xatm_commit " << outcome_[id] << ") on SQLite only";
    }
    EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
    std::map<int, int> counts;
    for (const auto& [id, rc] : outcome_) {
      ++counts[rc];
      if (rc == XATM_OK || rc == XATM_EPENDING) {
        EXPECT_EQ(1u, pg.count(id)) << "transfer " << id << " was acknowledged but is not committed";
      } else if (rc != XATM_EUNKNOWN) {
        EXPECT_EQ(0u, pg.count(id)) << "transfer " << id << " returned " << rc << " but is committed";
      }
    }
    for (const auto& [rc, n] : counts) std::fprintf(stderr, "xatm_commit %d: %d transfer(s)\n", rc, n);
  }

  ScratchDb db_, store_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
  std::string client_;
  std::mutex mu_;
  long next_id_ = 1;
  std::map<long, int> outcome_;
  std::vector<std::thread> workers_;
};

TEST_F(XatmdFailoverTest, TheStandbyTakesOverWhenTheLeaderIsKilledAndClientsGoOn) {
  XatmdProcess a(dir_ / "a.conf", dir_ / "a.log"), b(dir_ / "b.conf", dir_ / "b.log");
  xatm* tm = nullptr;
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  ASSERT_NO_FATAL_FAILURE(LeadAndWork(a, b, &tm, &stop, &ok));
  EXPECT_EQ(128 + SIGKILL, WaitStatusCode(a.Stop(SIGKILL)));
  const int before = ok;
  // b leads within the lease (2 s) and a look; the client finds it.
  EXPECT_TRUE(WaitFor([&] { return b.Log().find("serving:") != std::string::npos; }, 15)) << b.Log();
  EXPECT_TRUE(WaitFor([&] { return ok >= before + 50; }, 30)) << "no commits through b:\n" << b.Log();
  stop = true;
  Join();
  ASSERT_EQ(XATM_OK, xatm_close(tm));
  ExpectAtomic();
  if (HasFailure()) std::fprintf(stderr, "a:\n%s\nb:\n%s\n", a.Log().c_str(), b.Log().c_str());
  // The admin tool reaches whichever leads.
  ShellResult r = RunShell(std::string(XATM_CLI) + " --server unix:" + (dir_ / "a.sock") + ",unix:" +
                           (dir_ / "b.sock") + " store nodes");
  EXPECT_EQ(0, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("pair")) << r.out;
  // a, started again, stands by behind b.
  a.StartUntil("standing by");
  EXPECT_TRUE(b.Alive());
}

TEST_F(XatmdFailoverTest, ALeaderFrozenPastItsLeaseIsReplacedAndStopsWhenItWakes) {
  XatmdProcess a(dir_ / "a.conf", dir_ / "a.log"), b(dir_ / "b.conf", dir_ / "b.log");
  xatm* tm = nullptr;
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  ASSERT_NO_FATAL_FAILURE(LeadAndWork(a, b, &tm, &stop, &ok));
  ::kill(a.pid(), SIGSTOP);
  const int before = ok;
  EXPECT_TRUE(WaitFor([&] { return b.Log().find("serving:") != std::string::npos; }, 15)) << b.Log();
  EXPECT_TRUE(WaitFor([&] { return ok >= before + 50; }, 30)) << "no commits through b:\n" << b.Log();
  // Woken, a decides nothing more: it finds out and stops (exit 6).
  ::kill(a.pid(), SIGCONT);
  EXPECT_EQ(6, WaitStatusCode(a.Wait())) << a.Log();
  EXPECT_NE(std::string::npos, a.Log().find("another server took the node over")) << a.Log();
  stop = true;
  Join();
  ASSERT_EQ(XATM_OK, xatm_close(tm));
  ExpectAtomic();
}

// The leader frozen exactly at a client's decision: before it is written, and
// after it is durable but before the reply. The client's commit is left
// unknown (XATM_EUNKNOWN) with its SQLite branch prepared on its own
// connection; b takes the node over; the client's next transaction asks b how
// the first ended and finishes its branch accordingly. Woken, a decides
// nothing more (its epoch moved) and stops: the transfer is on both sides
// (after) or on neither (before), never on one.
TEST_F(XatmdFailoverTest, ALeaderFrozenAtADecisionNeverContradictsWhatItsSuccessorSays) {
  for (const char* point : {"server.commit.before_decision", "server.commit.after_decision"}) {
    SCOPED_TRACE(point);
    const bool decided = std::string(point) == "server.commit.after_decision";
    const long id = decided ? 100 : 200;
    XatmdProcess a(dir_ / "a.conf", dir_ / "a.log"), b(dir_ / "b.conf", dir_ / "b.log");
    a.StartPausingAt(point);
    b.StartUntil("standing by");
    xatm* tm = nullptr;
    ASSERT_EQ(XATM_OK, xatm_open(client_.c_str(), &tm)) << xatm_errmsg(tm);
    xatm_tx* tx = nullptr;
    ASSERT_EQ(XATM_OK, xatm_start(tm, &tx));
    ASSERT_TRUE(TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), id, 1, 2, 1));
    EXPECT_EQ(XATM_EUNKNOWN, xatm_commit(tx)) << xatm_errmsg(tm) << "\na:\n" << a.Log();
    xatm_tx_free(tx);
    ASSERT_TRUE(WaitStopped(a.pid(), 5)) << "a did not freeze at " << point;
    ASSERT_TRUE(WaitFor([&] { return b.Log().find("serving:") != std::string::npos; }, 15)) << b.Log();
    // The next transaction settles the branch the client holds, then runs.
    ASSERT_TRUE(WaitFor([&] { return Transfer(tm, id + 1) == XATM_OK; }, 20)) << b.Log();
    EXPECT_EQ(decided ? 1u : 0u, bank_->SqliteTransfers().count(id)) << "a:\n" << a.Log() << "\nb:\n" << b.Log();
    ::kill(a.pid(), SIGCONT);
    EXPECT_EQ(6, WaitStatusCode(a.Wait())) << a.Log();
    ASSERT_EQ(XATM_OK, xatm_close(tm));
    ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0 && bank_->SqlitePrepared() == 0; }, 20)) << b.Log();
    EXPECT_EQ(decided ? 1u : 0u, bank_->PgTransfers().count(id)) << b.Log();
    EXPECT_EQ(bank_->PgTransfers(), bank_->SqliteTransfers());
    EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
    b.Stop(SIGTERM);
  }
}

TEST_F(XatmdFailoverTest, SeveralServersNeedAPostgresqlStoreAndAListenAddress) {
  std::string text = ReadFileOrDie(client_);
  text.replace(text.find("log_store = postgresql"), 22, "log_store = file");
  WriteFileOrDie(dir_ / "file.conf", text + "listen = unix:" + (dir_ / "a.sock") + "\n");
  ShellResult r = RunShell(std::string(XATM_XATMD) + " --config " + (dir_ / "file.conf") + " --check-config");
  EXPECT_EQ(2, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("only in a postgresql store")) << r.out;
  r = RunShell(std::string(XATM_XATMD) + " --config " + client_ + " --check-config");
  EXPECT_EQ(2, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("[server] listen names the one")) << r.out;
  r = RunShell(std::string(XATM_XATMD) + " --config " + (dir_ / "a.conf") + " --check-config");
  EXPECT_EQ(0, r.code) << r.out;
}

}  // namespace
}  // namespace xtm::test
