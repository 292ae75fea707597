// xatm-log-bench: decisions/s and latency of the decision log with 1, 4, 16
// and 64 concurrent committers, next to a raw write+fdatasync loop on the
// same disk, in one run; with --store, of a PostgreSQL decision store too
// (log_store = postgresql: decisions per PostgreSQL COMMIT instead of per
// fdatasync). Modes alternate over several rounds so that machine noise
// falls on all of them alike; each cell is the median round.
//
//   xatm-log-bench [--dir DIR] [--seconds S] [--rounds N] [--sync off]
//                  [--store CONNINFO [--label NAME]]...
//
// --sync off measures the log's CPU cost alone (nothing is durable). Each
// --store adds a store; --label names the one before it in the table.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"

#include "log/decision_log.h"
#include "store/postgres_store.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  double per_sec = 0;
  double p50_us = 0;
  double p99_us = 0;
  double avg_batch = 1;
  double cpu_us = 0;  // process CPU time (user + system) per decision
};

double CpuSeconds() {
  struct rusage ru;
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

xtm::log::CommitRecord Decision(int t, uint64_t i) {
  xtm::log::CommitRecord c;
  c.format_id = 0x78617463;
  c.gtrid = "bench-" + std::to_string(t) + "-" + std::to_string(i);
  c.time_ms = xtm::log::NowMs();
  c.branches = {{"bank", "b1"}, {"ledger", "b2"}};
  return c;
}

// What one decision costs on disk, as a plain loop: append the same bytes,
// fdatasync.
Result RawFdatasync(const std::string& dir, double seconds) {
  std::string path = dir + "/raw.dat";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
  if (fd < 0) std::exit(1);
  std::string rec = xtm::log::Framed(Decision(0, 0));
  std::vector<double> lat;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  uint64_t n = 0;
  for (auto now = start; now < end; ++n) {
    auto t0 = Clock::now();
    if (::write(fd, rec.data(), rec.size()) != static_cast<ssize_t>(rec.size()) || ::fdatasync(fd) != 0) {
      std::perror("raw");
      std::exit(1);
    }
    now = Clock::now();
    lat.push_back(std::chrono::duration<double, std::micro>(now - t0).count());
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  ::unlink(path.c_str());
  return {static_cast<double>(n) / secs, xtm::bench::Percentile(lat, 0.5), xtm::bench::Percentile(lat, 0.99), 1};
}

bool g_sync = true;

// `threads` committers for `seconds`, each appending a decision and its END
// through `decide` in a loop; syncs() counts the syncs so far.
Result RunCommitters(int threads, double seconds, const std::function<void(const xtm::log::CommitRecord&)>& decide,
                     const std::function<uint64_t()>& syncs) {
  const uint64_t syncs0 = syncs();
  const double cpu0 = CpuSeconds();
  std::vector<std::vector<double>> lat(static_cast<size_t>(threads));
  std::atomic<uint64_t> total{0};
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      uint64_t i = 0;
      for (auto now = Clock::now(); now < end; ++i) {
        auto t0 = now;
        decide(Decision(t, i));
        now = Clock::now();
        lat[static_cast<size_t>(t)].push_back(std::chrono::duration<double, std::micro>(now - t0).count());
      }
      total += i;
    });
  }
  for (auto& th : ts) th.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = CpuSeconds() - cpu0;
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  Result r{static_cast<double>(total) / secs, xtm::bench::Percentile(all, 0.5), xtm::bench::Percentile(all, 0.99), 1,
           cpu * 1e6 / static_cast<double>(total)};
  if (const uint64_t n = syncs() - syncs0) r.avg_batch = static_cast<double>(total) / static_cast<double>(n);
  return r;
}

void Check(const xtm::Status& s) {
  if (s.ok()) return;
  std::fprintf(stderr, "%s\n", s.ToString().c_str());
  std::exit(1);
}

Result Committers(const std::string& dir, int threads, double seconds) {
  std::string logdir = dir + "/log-" + std::to_string(threads);
  std::filesystem::remove_all(logdir);
  std::filesystem::create_directories(logdir);
  std::unique_ptr<xtm::log::DecisionLog> log;
  Check(xtm::log::DecisionLog::Open({.dir = logdir, .sync = g_sync}, &log));
  // The transaction ends at once, as a real one would after phase two.
  const Result r = RunCommitters(
      threads, seconds,
      [&](const xtm::log::CommitRecord& c) {
        Check(log->Append(c));
        Check(log->Append(xtm::log::EndRecord{c.gtrid}));
      },
      [&] { return log->Stats().syncs; });
  log.reset();
  std::filesystem::remove_all(logdir);
  return r;
}

// The same against a PostgreSQL decision store: each decision is one row in
// a shared (group) commit, its END a delete.
Result StoreCommitters(const std::string& conninfo, int threads, double seconds) {
  std::unique_ptr<xtm::store::DecisionStore> store;
  Check(xtm::store::PostgresStore::Open(
      {.conninfo = conninfo, .node_name = "bench-" + std::to_string(threads), .lease_s = 10}, &store));
  const Result r = RunCommitters(
      threads, seconds,
      [&](const xtm::log::CommitRecord& c) {
        Check(store->Commit(c, store->Current().get()));
        store->End(xtm::log::EndRecord{c.gtrid});
      },
      [&] { return store->Stats().syncs; });
  store->Close();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "bench-data";
  double seconds = 2;
  int rounds = 3;
  std::vector<std::pair<std::string, std::string>> stores;  // label, conninfo
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--sync")) g_sync = std::strcmp(argv[i + 1], "off") != 0;
    else if (!std::strcmp(argv[i], "--store")) stores.push_back({"postgresql store", argv[i + 1]});
    else if (!std::strcmp(argv[i], "--label") && !stores.empty()) stores.back().first = argv[i + 1];
  }
  std::filesystem::create_directories(dir);
  const std::vector<int> committers = {1, 4, 16, 64};
  std::vector<Result> raw;
  std::vector<std::vector<Result>> log(committers.size());
  std::vector<std::vector<std::vector<Result>>> pg(stores.size(), std::vector<std::vector<Result>>(committers.size()));
  for (int r = 0; r < rounds; ++r) {
    raw.push_back(RawFdatasync(dir, seconds));
    for (size_t k = 0; k < committers.size(); ++k) {
      log[k].push_back(Committers(dir, committers[k], seconds));
      for (size_t p = 0; p < stores.size(); ++p) {
        pg[p][k].push_back(StoreCommitters(stores[p].second, committers[k], seconds));
      }
    }
    std::fprintf(stderr, "round %d done\n", r);
  }
  Result rawm = xtm::bench::MedianBy(raw, &Result::per_sec);
  std::printf("| mode | decisions/s | p50 µs | p99 µs | decisions per sync | CPU µs per decision | time vs file log |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  std::printf("| raw write+fdatasync loop | %.0f | %.1f | %.1f | 1.0 | | |\n", rawm.per_sec, rawm.p50_us, rawm.p99_us);
  for (size_t k = 0; k < committers.size(); ++k) {
    Result m = xtm::bench::MedianBy(log[k], &Result::per_sec);
    std::printf("| decision log, %d committer%s | %.0f | %.1f | %.1f | %.1f | %.1f | 1.00× |\n", committers[k],
                committers[k] == 1 ? "" : "s", m.per_sec, m.p50_us, m.p99_us, m.avg_batch, m.cpu_us);
    for (size_t p = 0; p < stores.size(); ++p) {
      const std::string& label = stores[p].first;
      Result q = xtm::bench::MedianBy(pg[p][k], &Result::per_sec);
      std::printf("| %s, %d committer%s | %.0f | %.1f | %.1f | %.1f | %.1f | %.2f× |\n", label.c_str(), committers[k],
                  committers[k] == 1 ? "" : "s", q.per_sec, q.p50_us, q.p99_us, q.avg_batch, q.cpu_us,
                  m.per_sec / q.per_sec);
    }
  }
  std::filesystem::remove_all(dir);
  return 0;
}
