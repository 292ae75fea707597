// A randomized soak: a process doing concurrent transfers is killed again and
// again while PostgreSQL is restarted and connections are cut at random; after
// every round, recovery runs and the invariants are checked: the same
// transfers on both sides, money conserved, every acknowledged commit present,
// nothing of ours left prepared. Bounded: XATM_SOAK_ROUNDS rounds (default
// 30), at most XATM_SOAK_SECONDS seconds (default 240).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

#include "support/fork_child.h"
#include "support/pg_proxy.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

using Clock = std::chrono::steady_clock;

int EnvInt(const char* name, int dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : dflt;
}

// Two threads of transfers; each acknowledged id goes to fd.
[[noreturn]] void Worker(const std::string& config, long first, int fd) {
  xatm* tm = nullptr;
  if (xatm_open(config.c_str(), &tm) != XATM_OK) ::_exit(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(first + t));
      for (long id = first + t * 50000L;; ++id) {
        xatm_tx* tx = nullptr;
        if (xatm_start(tm, &tx) != XATM_OK) continue;
        PGconn* pg = xatm_pgconn(tx, "bank");
        sqlite3* db = pg ? xatm_sqlite(tx, "ledger") : nullptr;
        int amount = static_cast<int>(rng() % 20) - 10;
        bool ok = pg && db &&
                  TransferStatements(pg, db, id, 1 + static_cast<int>(rng() % kAccounts),
                                     1 + static_cast<int>(rng() % kAccounts), amount);
        int rc = ok ? xatm_commit(tx) : xatm_rollback(tx);
        xatm_tx_free(tx);
        if (ok && rc == XATM_OK && ::write(fd, &id, sizeof id) != sizeof id) ::_exit(4);
        if (!ok) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  for (auto& th : threads) th.join();
  ::_exit(0);
}

void Soak(int rounds, bool last_resource);

TEST(Soak, KillsRestartsAndCutsNeverBreakAtomicity) { Soak(EnvInt("XATM_SOAK_ROUNDS", 30), false); }

TEST(Soak, WithLastResourceCommit) { Soak(EnvInt("XATM_SOAK_ROUNDS", 30), true); }

void Soak(const int rounds, bool last_resource) {
  const auto deadline = Clock::now() + std::chrono::seconds(EnvInt("XATM_SOAK_SECONDS", 240));
  OwnCluster cluster(64, /*tcp=*/true);
  PgProxy proxy(cluster.port());
  TempDir dir;
  const std::string conninfo = "host=127.0.0.1 port=" + std::to_string(proxy.port()) +
                               " user=postgres dbname=postgres sslmode=disable gssencmode=disable connect_timeout=5";
  Bank bank(conninfo, dir.path());
  // Last-resource commit (the SQLite branch commits last) is the default.
  const std::string config = bank.WriteConfigFile(60, last_resource ? "" : kEveryBranchPrepared);
  std::mt19937 rng(20261122);
  std::set<long> acked;
  int done = 0, restarts = 0, violations = 0;
  for (int round = 0; round < rounds && Clock::now() < deadline; ++round) {
    int fds[2];
    ASSERT_EQ(0, ::pipe(fds));
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::close(fds[0]);
      Worker(config, (round + 1) * 1000000L, fds[1]);
    }
    ::close(fds[1]);
    // Disruptions for this round.
    const char* stmt = rng() % 2 ? "PREPARE TRANSACTION" : "COMMIT PREPARED";
    proxy.CutOn(stmt, rng() % 2 ? PgProxy::Cut::kBeforeForward : PgProxy::Cut::kAfterReply, 1);
    const bool restart = rng() % 5 == 0;
    const int want = 3 + static_cast<int>(rng() % 15);
    long id;
    for (int got = 0; got < want && ::read(fds[0], &id, sizeof id) == sizeof id; ++got) {
      acked.insert(id);
      if (restart && got == want / 2) {
        cluster.Restart("immediate");
        ++restarts;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));
    ::kill(pid, SIGKILL);
    while (::read(fds[0], &id, sizeof id) == sizeof id) acked.insert(id);
    ::close(fds[0]);
    ::waitpid(pid, nullptr, 0);
    // Recovery, then the invariants.
    xatm* tm = nullptr;
    ASSERT_EQ(XATM_OK, xatm_open(config.c_str(), &tm)) << xatm_errmsg(tm);
    ASSERT_EQ(XATM_OK, xatm_close(tm));
    std::set<long> pg = bank.PgTransfers(), sq = bank.SqliteTransfers();
    bool ok = pg == sq && bank.PgSum() + bank.SqliteSum() == 2L * kAccounts * kOpening &&
              bank.PgPrepared() == 0 && bank.SqlitePrepared() == 0;
    for (long a : acked) ok = ok && pg.count(a);
    if (!ok) {
      ++violations;
      ADD_FAILURE() << "round " << round << ": invariants broken (pg " << pg.size() << " transfers, sqlite "
                    << sq.size() << ", sum " << bank.PgSum() + bank.SqliteSum() << ", prepared "
                    << bank.PgPrepared() << "/" << bank.SqlitePrepared() << ")";
    }
    ++done;
  }
  std::printf("soak%s: %d kill rounds, %d PostgreSQL restarts, %d connection cuts, %zu acknowledged transfers, "
              "%d violations\n",
              last_resource ? " (last-resource commit)" : "", done, restarts, proxy.cuts(), acked.size(), violations);
  EXPECT_EQ(0, violations);
  EXPECT_GE(done, std::min(rounds, 30));
}

}  // namespace
}  // namespace xtm::test
