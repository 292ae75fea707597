// xatm-memory-bench: does a TM process's memory stay flat? One TM runs N
// transfers (one UPDATE on PostgreSQL, one on SQLite; default settings: the
// SQLite branch commits last holding the decision, or with
// --every-branch-prepared both prepared and the decision logged) on several
// threads and reports its resident set size as it goes: after a warm-up, then
// every tenth of the run, and at the end.
//
//   xatm-memory-bench --pg CONNINFO --dir DIR [--transactions N] [--threads T]
//                     [--every-branch-prepared]
#include <libpq-fe.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "xatm/xatm.h"

namespace {

using xtm::bench::PgOk;

constexpr int kAccounts = 10000;

void Die(const std::string& m) {
  std::fprintf(stderr, "xatm-memory-bench: %s\n", m.c_str());
  std::exit(1);
}

long RssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string pg, dir = "bench-data";
  long total = 1000000;
  int threads = 8;
  bool every_branch_prepared = false;
  const std::string bad = xtm::bench::Options(
      argc, argv, {{"--every-branch-prepared", &every_branch_prepared}}, [&](const std::string& k, const std::string& v) {
        if (k == "--pg") pg = v;
        else if (k == "--dir") dir = v;
        else if (k == "--transactions") total = std::atol(v.c_str());
        else if (k == "--threads") threads = std::atoi(v.c_str());
        else return false;
        return true;
      });
  if (!bad.empty()) Die(bad);
  if (pg.empty()) Die("give --pg CONNINFO");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/log");
  if (std::string e = xtm::bench::MakePgAccounts(pg, 1, kAccounts); !e.empty()) Die(e);
  if (std::string e = xtm::bench::MakeSqliteAccounts(dir + "/bench.db", 1, kAccounts); !e.empty()) Die(e);
  xatm_config* cfg = nullptr;
  xatm_config_new(&cfg);
  xatm_config_set(cfg, "log_dir", (dir + "/log").c_str());
  xatm_config_set(cfg, "log_level", "warn");
  if (every_branch_prepared) xatm_config_set(cfg, "last_resource_commit", "false");
  xatm_config_add_pgsql(cfg, "bank", pg.c_str());
  xatm_config_add_sqlite(cfg, "ledger", ("path=" + dir + "/bench.db busy_timeout_ms=60000").c_str());
  xatm* tm = nullptr;
  if (xatm_open_config(cfg, &tm) != XATM_OK) Die(xatm_errmsg(tm));
  xatm_config_free(cfg);

  std::atomic<long> next{0}, done{0}, failed{0};
  const long warmup = std::min<long>(10000, total / 10);
  long rss_start = -1;
  std::printf("| transactions | RSS KiB |\n|---:|---:|\n");
  std::vector<std::thread> ts;
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t + 1));
      auto pick = [&] { return std::to_string(1 + rng() % kAccounts); };
      while (next++ < total) {
        xatm_tx* tx = nullptr;
        if (xatm_start(tm, &tx) != XATM_OK) Die(xatm_errmsg(tm));
        PGconn* p = xatm_pgconn(tx, "bank");
        sqlite3* db = xatm_sqlite(tx, "ledger");
        bool ok = p && db && PgOk(p, "UPDATE accounts SET balance = balance + 1 WHERE id = " + pick()) &&
                  sqlite3_exec(db, ("UPDATE accounts SET balance = balance - 1 WHERE id = " + pick()).c_str(),
                               nullptr, nullptr, nullptr) == SQLITE_OK;
        ok = ok ? xatm_commit(tx) == XATM_OK : (xatm_rollback(tx), false);
        xatm_tx_free(tx);
        (ok ? done : failed)++;
      }
    });
  }
  // Report from the main thread.
  long reported = 0;
  while (done + failed < total) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const long n = done + failed;
    if (rss_start < 0 && n >= warmup) {
      rss_start = RssKb();
      std::printf("| %ld (after warm-up) | %ld |\n", n, rss_start);
      std::fflush(stdout);
    }
    if (n - reported >= total / 10) {
      reported = n;
      std::printf("| %ld | %ld |\n", n, RssKb());
      std::fflush(stdout);
    }
  }
  for (auto& th : ts) th.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long rss_end = RssKb();
  std::printf("| %ld (end) | %ld |\n\n", static_cast<long>(done + failed), rss_end);
  std::printf("%ld committed, %ld rolled back (lock conflicts), %.0f tx/s; RSS after warm-up %ld KiB, at the end "
              "%ld KiB (%+.1f%%); decision log on disk: %ld KiB\n",
              static_cast<long>(done), static_cast<long>(failed), static_cast<double>(done + failed) / secs, rss_start,
              rss_end, rss_start > 0 ? 100.0 * static_cast<double>(rss_end - rss_start) / static_cast<double>(rss_start) : 0.0,
              [&] {
                long kb = 0;
                for (const auto& e : std::filesystem::directory_iterator(dir + "/log")) {
                  if (e.is_regular_file()) kb += static_cast<long>(e.file_size() / 1024);
                }
                return kb;
              }());
  xatm_close(tm);
  return 0;
}
