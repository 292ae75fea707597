// xatm-sqlite-bench: the SQLite RM's durable two-phase path (xa_start ...
// xa_prepare, xa_commit) next to a plain BEGIN IMMEDIATE ... COMMIT of the
// same work on the same file, for a 1-row and a 1000-row branch. Modes
// alternate over rounds; each cell is the median round. Both sides run with
// journal_mode=WAL and synchronous=FULL: every commit is durable.
//
//   xatm-sqlite-bench [--dir DIR] [--seconds S] [--rounds N]
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_util.h"

#include "common/xid_util.h"
#include "xatm/rm_sqlite.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  double per_sec = 0, p50_us = 0, p99_us = 0;
};

void Must(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "xatm-sqlite-bench: %s failed: %s\n", what, xatm_sqlite_errmsg(1));
    std::exit(1);
  }
}

std::string Work(int rows, uint64_t i) {
  return "UPDATE acct SET v = v + 1, note = 'n" + std::to_string(i) + "' WHERE id <= " + std::to_string(rows);
}

template <typename Op>
Result Measure(double seconds, Op op) {
  std::vector<double> lat;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  uint64_t n = 0;
  for (auto now = start; now < end; ++n) {
    auto t0 = now;
    op(n);
    now = Clock::now();
    lat.push_back(std::chrono::duration<double, std::micro>(now - t0).count());
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  return {static_cast<double>(n) / secs, xtm::bench::Percentile(lat, 0.5), xtm::bench::Percentile(lat, 0.99)};
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "bench-data";
  double seconds = 1;
  int rounds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
  }
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/bench.db";
  for (const char* suffix : {"", "-wal", "-shm", "-xatm", "-xatm-wal", "-xatm-shm"}) {
    std::filesystem::remove(path + suffix);
  }
  sqlite3* plain = nullptr;
  sqlite3_open(path.c_str(), &plain);
  Must(sqlite3_exec(plain,
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                    "CREATE TABLE acct (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, note TEXT);"
                    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000)"
                    "  INSERT INTO acct SELECT i, 0, '' FROM s;",
                    nullptr, nullptr, nullptr) == SQLITE_OK,
       "setup");
  std::string info = "path=" + path;
  Must(xatm_sqlite_switch.xa_open_entry(info.data(), 1, TMNOFLAGS) == XA_OK, "xa_open");
  sqlite3* h = xatm_sqlite_db(1);
  Must(sqlite3_exec(h, "PRAGMA synchronous = FULL", nullptr, nullptr, nullptr) == SQLITE_OK, "pragma");

  auto plain_op = [&](int rows) {
    return [&, rows](uint64_t i) {
      std::string sql = "BEGIN IMMEDIATE; " + Work(rows, i) + "; COMMIT";
      Must(sqlite3_exec(plain, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK, "plain commit");
    };
  };
  uint64_t serial = 0;
  auto xa_op = [&](int rows) {
    return [&, rows](uint64_t i) {
      XID x;
      std::string g = "bench-" + std::to_string(serial++);
      xtm::rm::MakeXid(0x78617463, g, "b", &x);
      Must(xatm_sqlite_switch.xa_start_entry(&x, 1, TMNOFLAGS) == XA_OK, "xa_start");
      Must(sqlite3_exec(h, Work(rows, i).c_str(), nullptr, nullptr, nullptr) == SQLITE_OK, "update");
      Must(xatm_sqlite_switch.xa_end_entry(&x, 1, TMSUCCESS) == XA_OK, "xa_end");
      Must(xatm_sqlite_switch.xa_prepare_entry(&x, 1, TMNOFLAGS) == XA_OK, "xa_prepare");
      Must(xatm_sqlite_switch.xa_commit_entry(&x, 1, TMNOFLAGS) == XA_OK, "xa_commit");
    };
  };

  const int sizes[] = {1, 1000};
  std::vector<Result> p[2], x[2];
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < 2; ++k) {
      p[k].push_back(Measure(seconds, plain_op(sizes[k])));
      x[k].push_back(Measure(seconds, xa_op(sizes[k])));
    }
  }
  std::printf("| branch | plain BEGIN IMMEDIATE…COMMIT tx/s | p50 µs | durable 2PC (prepare+commit) tx/s | p50 µs | cost |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (int k = 0; k < 2; ++k) {
    Result a = xtm::bench::MedianBy(p[k], &Result::per_sec), b = xtm::bench::MedianBy(x[k], &Result::per_sec);
    std::printf("| %d row%s | %.0f | %.0f | %.0f | %.0f | %.2f× |\n", sizes[k], sizes[k] == 1 ? "" : "s",
                a.per_sec, a.p50_us, b.per_sec, b.p50_us, a.per_sec / b.per_sec);
  }
  xatm_sqlite_switch.xa_close_entry(info.data(), 1, TMNOFLAGS);
  sqlite3_close(plain);
  std::filesystem::remove_all(dir);
  return 0;
}
