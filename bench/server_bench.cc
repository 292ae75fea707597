// xatm-server-bench: is xatmd the bottleneck? The transfer workload run by
// 1, 4 and 16 client *processes*, each with its own TM, in two modes that
// alternate within one run:
//
//   embedded   each process has its own decision log (the embedded TM)
//   xatmd      every process's decisions go to one xatmd (one shared log,
//              group commit across processes)
//
// and two workloads: pg+sqlite (one UPDATE on PostgreSQL, one on SQLite) and
// pg+pg (one UPDATE on each of two PostgreSQL databases; no SQLite writer lock
// serializing the processes, so the TM's own cost shows more).
//
//   xatm-server-bench --pg CONNINFO --pg2 CONNINFO --dir DIR --xatmd PATH
//                     [--seconds S] [--rounds N] [--procs 1,4,16] [--csv FILE]
//
// Prints a table (median round per cell) and writes every round to the CSV.
#include <libpq-fe.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "xatm/xatm.h"

namespace {

using xtm::bench::PgOk;

using Clock = std::chrono::steady_clock;
constexpr int kAccounts = 10000;

struct Args : xtm::bench::TransferArgs {
  Args() { csv = "xatm-server-bench.csv"; }
  std::string xatmd;
  std::vector<int> procs = {1, 4, 16};
};

void Die(const std::string& m) {
  std::fprintf(stderr, "xatm-server-bench: %s\n", m.c_str());
  std::exit(1);
}

std::string Update(int id) { return "UPDATE accounts SET balance = balance + 1 WHERE id = " + std::to_string(id); }

struct Result {
  double tps = 0, p50_us = 0, p99_us = 0;
};

// One client process: opens its TM, waits for the start signal, runs
// transfers until the deadline, and writes its latencies (µs) to lat_file.
[[noreturn]] void Client(const Args& a, const std::string& mode, const std::string& workload, int index,
                         int start_fd, const std::string& lat_file) {
  xatm_config* cfg = nullptr;
  xatm_config_new(&cfg);
  xatm_config_set(cfg, "log_level", "warn");
  // Every decision a log record, in both modes: with the default, a
  // transaction whose SQLite branch wrote keeps its decision in the SQLite
  // file, and the server's log would not be what is measured. (The client
  // chooses how it commits; the server's configuration has no say.)
  xatm_config_set(cfg, "last_resource_commit", "false");
  if (mode == "xatmd") {
    xatm_config_set(cfg, "server", ("unix:" + a.dir + "/xatmd.sock").c_str());
  } else {
    const std::string log = a.dir + "/log-" + std::to_string(index);
    std::filesystem::create_directories(log);
    xatm_config_set(cfg, "log_dir", log.c_str());
  }
  xatm_config_add_pgsql(cfg, "bank", a.pg.c_str());
  xatm_config_add_pgsql(cfg, "bank2", a.pg2.c_str());
  xatm_config_add_sqlite(cfg, "ledger", ("path=" + a.dir + "/bench.db busy_timeout_ms=60000").c_str());
  xatm* tm = nullptr;
  if (xatm_open_config(cfg, &tm) != XATM_OK) {
    std::fprintf(stderr, "client %d: %s\n", index, xatm_errmsg(tm));
    std::_Exit(2);
  }
  xatm_config_free(cfg);
  char go;
  if (::read(start_fd, &go, 1) != 1) std::_Exit(3);
  std::mt19937 rng(static_cast<unsigned>(index * 7919 + 1));
  auto pick = [&] { return 1 + static_cast<int>(rng() % kAccounts); };
  std::vector<double> lat;
  const auto end = Clock::now() + std::chrono::duration<double>(a.seconds);
  while (Clock::now() < end) {
    const auto t0 = Clock::now();
    xatm_tx* tx = nullptr;
    if (xatm_start(tm, &tx) != XATM_OK) std::_Exit(4);
    PGconn* pg = xatm_pgconn(tx, "bank");
    bool ok = pg && PgOk(pg, Update(pick()));
    if (workload == "pg+pg") {
      PGconn* pg2 = xatm_pgconn(tx, "bank2");
      ok = ok && pg2 && PgOk(pg2, Update(pick()));
    } else {
      sqlite3* db = xatm_sqlite(tx, "ledger");
      ok = ok && db && sqlite3_exec(db, Update(pick()).c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
    }
    ok = ok ? xatm_commit(tx) == XATM_OK : (xatm_rollback(tx), false);
    xatm_tx_free(tx);
    if (ok) lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  xatm_close(tm);
  std::ofstream(lat_file, std::ios::binary)
      .write(reinterpret_cast<const char*>(lat.data()), static_cast<std::streamsize>(lat.size() * sizeof(double)));
  std::_Exit(0);
}

Result RunCell(const Args& a, const std::string& mode, const std::string& workload, int procs) {
  int start[2];
  if (::pipe(start) != 0) Die("pipe");
  std::vector<pid_t> kids;
  for (int p = 0; p < procs; ++p) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(start[1]);
      Client(a, mode, workload, p, start[0], a.dir + "/lat-" + std::to_string(p));
    }
    kids.push_back(pid);
  }
  ::close(start[0]);
  // Let every client open its TM (connections, sessions) before the clock starts.
  std::this_thread::sleep_for(std::chrono::milliseconds(300 + 30 * procs));
  const std::string go(static_cast<size_t>(procs), 'g');
  if (::write(start[1], go.data(), go.size()) != static_cast<ssize_t>(go.size())) Die("start");
  ::close(start[1]);
  std::vector<double> all;
  for (int p = 0; p < procs; ++p) {
    int st = 0;
    ::waitpid(kids[static_cast<size_t>(p)], &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) Die("a client process failed (" + mode + ", " + workload + ")");
    std::ifstream in(a.dir + "/lat-" + std::to_string(p), std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
    const double* d = reinterpret_cast<const double*>(bytes.data());
    all.insert(all.end(), d, d + bytes.size() / sizeof(double));
  }
  Result r;
  r.tps = static_cast<double>(all.size()) / a.seconds;
  r.p50_us = xtm::bench::Percentile(all, 0.5);
  r.p99_us = xtm::bench::Percentile(all, 0.99);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (a.Take(k, v)) continue;
    if (k == "--xatmd") a.xatmd = v;
    else if (k == "--procs") {
      a.procs = xtm::bench::IntList(v);
    } else {
      Die("unknown option " + k);
    }
  }
  if (a.pg.empty() || a.pg2.empty() || a.xatmd.empty()) Die("give --pg CONNINFO --pg2 CONNINFO --xatmd PATH");
  std::filesystem::remove_all(a.dir);
  std::filesystem::create_directories(a.dir + "/server-log");
  a.dir = std::filesystem::absolute(a.dir).string();
  for (const std::string& ci : {a.pg, a.pg2}) {
    if (std::string e = xtm::bench::MakePgAccounts(ci, 1, kAccounts); !e.empty()) Die(e);
  }
  if (std::string e = xtm::bench::MakeSqliteAccounts(a.dir + "/bench.db", 1, kAccounts); !e.empty()) Die(e);
  // The server, with the same RMs.
  const std::string conf = a.dir + "/xatmd.conf";
  std::ofstream(conf) << "[tm]\nlog_dir = " << a.dir << "/server-log\nserver = unix:" << a.dir
                      << "/xatmd.sock\nlog_level = warn\n\n[server]\nmetrics = off\n\n[rm.bank]\ntype = postgresql\n"
                      << "conninfo = " << a.pg << "\n\n[rm.bank2]\ntype = postgresql\nconninfo = " << a.pg2
                      << "\n\n[rm.ledger]\ntype = sqlite\npath = " << a.dir << "/bench.db\nbusy_timeout_ms = 60000\n";
  pid_t server = ::fork();
  if (server == 0) {
    ::execl(a.xatmd.c_str(), "xatmd", "--config", conf.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  for (int i = 0; i < 300 && !std::filesystem::exists(a.dir + "/xatmd.sock"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!std::filesystem::exists(a.dir + "/xatmd.sock")) Die("xatmd did not start");

  const std::vector<std::string> modes = {"embedded", "xatmd"};
  const std::vector<std::string> workloads = {"pg+sqlite", "pg+pg"};
  std::map<std::tuple<std::string, std::string, int>, std::vector<Result>> results;
  std::ofstream csv(a.csv);
  csv << "round,workload,mode,procs,tps,p50_us,p99_us\n";
  for (int round = 0; round < a.rounds; ++round) {
    for (const std::string& w : workloads) {
      for (int procs : a.procs) {
        for (const std::string& m : modes) {
          Result r = RunCell(a, m, w, procs);
          results[{w, m, procs}].push_back(r);
          csv << round << "," << w << "," << m << "," << procs << "," << r.tps << "," << r.p50_us << "," << r.p99_us
              << "\n";
          std::fprintf(stderr, "round %d: %-9s %-8s %2d procs %8.0f tx/s\n", round, w.c_str(), m.c_str(), procs, r.tps);
        }
      }
    }
  }
  ::kill(server, SIGTERM);
  ::waitpid(server, nullptr, 0);
  auto median = [](const std::vector<Result>& v) { return xtm::bench::MedianBy(v, &Result::tps); };
  std::printf("| workload | processes | embedded tx/s | xatmd tx/s | xatmd / embedded | p50 ms (emb / xatmd) | p99 ms (emb / xatmd) |\n"
              "|---|---:|---:|---:|---:|---:|---:|\n");
  for (const std::string& w : workloads) {
    for (int procs : a.procs) {
      const Result e = median(results[{w, "embedded", procs}]);
      const Result s = median(results[{w, "xatmd", procs}]);
      std::printf("| %s | %d | %.0f | %.0f | %.0f%% | %.2f / %.2f | %.2f / %.2f |\n", w.c_str(), procs, e.tps, s.tps,
                  e.tps > 0 ? 100 * s.tps / e.tps : 0.0, e.p50_us / 1000, s.p50_us / 1000, e.p99_us / 1000,
                  s.p99_us / 1000);
    }
  }
  return 0;
}
