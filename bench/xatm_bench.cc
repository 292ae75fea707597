// xatm-bench: the price of atomicity. The transfer workload — one UPDATE on
// PostgreSQL and one on SQLite (or on a second PostgreSQL database) — run by
// 1, 4 and 16 threads in several modes, alternating in one run so that
// machine noise falls on every mode alike:
//
//   local        two independent local commits, no atomicity (the baseline)
//   xatm         one global transaction through xatm (default settings: SQLite
//                commits last, in one phase, holding the decision)
//   xatm-2pc     the same with last_resource_commit = false (every branch
//                prepared, the decision a record in the TM's log)
//   xatm-bg      the default with background_phase_two = true (xatm_commit
//                returns once SQLite has committed holding the decision;
//                PostgreSQL's COMMIT PREPARED runs on a TM thread)
//   xatm-2pc-bg  both switched: every branch prepared, the decision logged,
//                SQLite committed, then PostgreSQL's on a TM thread
//   xatm-lrc     last_resource_commit = true (the same as the default when
//                SQLite wrote)
//   local-pg2    two local commits on two PostgreSQL databases
//   xatm-pg2     a global transaction over the two PostgreSQL databases
//                (default settings: both prepared, the decision logged)
//   xatm-lrc-pg2 the same with last_resource_commit = true (the second
//                database commits last, in one phase, holding the decision)
//   xatm-bg-pg2, xatm-lrc-bg-pg2  the same with background_phase_two = true
//   manual       by hand, what a last-resource commit does with nothing
//                recorded: PostgreSQL's PREPARE TRANSACTION, SQLite's COMMIT,
//                COMMIT PREPARED (not crash-safe: the floor for PostgreSQL's
//                2PC with SQLite)
//   manual-row   the same with a decision row in SQLite's commit, as the
//                RM's last resource writes it (still nothing to recover from)
//   manual-bg    the same, with COMMIT PREPARED handed to 4 threads of the
//                benchmark's own (the caller commits itself when 8 are
//                waiting), as background_phase_two does: the floor for
//                xatm-bg
//   manual-pg2   PostgreSQL's PREPARE TRANSACTION / COMMIT PREPARED by hand
//                on both (no decision log: not crash-safe, the floor for 2PC)
//   xatm-2pc-store, xatm-store-pg2  xatm-2pc and xatm-pg2 with the decisions
//                in a PostgreSQL store (log_store = postgresql; with --store)
//   xatm-2pc-store2, xatm-store2-pg2  the same in a second store (--store2:
//                e.g. one whose primary has a synchronous standby)
//   with --mysql-socket S --mysql-db D, the UPDATE's second half on MariaDB:
//   local-my     a local commit on PostgreSQL and one on MariaDB
//   xatm-my      a global transaction over both through xatm (default
//                settings: both prepared, the decision logged)
//   xatm-lrc-my  last_resource_commit = true (PostgreSQL commits last, in one
//                phase, holding the decision; MariaDB prepared)
//   manual-my    PREPARE TRANSACTION and XA PREPARE by hand, then COMMIT
//                PREPARED and XA COMMIT (no decision log: the floor for 2PC)
//
//   xatm-bench --pg CONNINFO --pg2 CONNINFO --dir DIR [--seconds S] [--rounds N]
//              [--threads 1,4,16] [--modes local,xatm,...] [--csv FILE]
//              [--pg-data PGDATA] [--store CONNINFO] [--store2 CONNINFO]
//              [--mysql-socket SOCKET --mysql-db DB]
//
// Prints a table (median round per cell; "time vs local" is the median over
// the rounds of each round's ratio to the local mode run just before it, so
// that the machine's drift between rounds cancels) and writes every round to
// the CSV:
// throughput, latency, CPU time per transaction (this process, and with
// --pg-data the PostgreSQL cluster's processes too) and, from the TMs'
// counters, how many commits shared each sync of the decision log.
#include <libpq-fe.h>
#include <mysql.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
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
  Args() { csv = "xatm-bench.csv"; }
  std::vector<int> threads = {1, 4, 16};
  std::vector<std::string> modes;  // empty: all
  std::string pg_data;             // the cluster's data directory: its CPU time is counted too
  std::string store;               // a PostgreSQL decision store's conninfo: the -store modes
  std::string store2;              // another one: the -store2 modes
  std::string mysql_socket, mysql_db;  // a MariaDB database: the -my modes
};

void Die(const std::string& m) {
  std::fprintf(stderr, "xatm-bench: %s\n", m.c_str());
  std::exit(1);
}

std::string Update(int id) {
  return "UPDATE accounts SET balance = balance + 1 WHERE id = " + std::to_string(id);
}

// One thread's connections for the local modes.
struct Local {
  PGconn* pg = nullptr;
  PGconn* pg2 = nullptr;
  sqlite3* db = nullptr;
  MYSQL* my = nullptr;
  ~Local() {
    if (my) mysql_close(my);
    if (pg) PQfinish(pg);
    if (pg2) PQfinish(pg2);
    if (db) sqlite3_close(db);
  }
};

struct Result {
  double tps = 0, p50_us = 0, p99_us = 0;
  long failed = 0;
  uint64_t commits = 0, log_syncs = 0;  // the TM's, over the run (xatm modes)
  double client_cpu_us = 0;             // CPU per transaction: this process (TM threads included)
  double server_cpu_us = -1;            // and the PostgreSQL cluster (-1: not measured)
};

using Op = std::function<bool(Local&, std::mt19937&, long)>;

// COMMIT PREPARED by hand off the caller's thread, as background phase two
// does it: kThreads threads with a connection each, at most kQueue gids
// waiting; when that many are, the caller commits on its own connection.
class BackgroundCommits {
 public:
  static constexpr int kThreads = 4;
  static constexpr size_t kQueue = 2 * kThreads;
  explicit BackgroundCommits(const std::string& conninfo) {
    for (int i = 0; i < kThreads; ++i) {
      threads_.emplace_back([this, conninfo] {
        PGconn* c = PQconnectdb(conninfo.c_str());
        std::unique_lock<std::mutex> lk(mu_);
        for (;;) {
          cv_.wait(lk, [&] { return stop_ || !gids_.empty(); });
          if (gids_.empty()) break;
          const std::string g = std::move(gids_.front());
          gids_.pop_front();
          ++busy_;
          lk.unlock();
          if (!PgOk(c, "COMMIT PREPARED '" + g + "'")) failed_++;
          lk.lock();
          --busy_;
          idle_.notify_all();
        }
        PQfinish(c);
      });
    }
  }
  ~BackgroundCommits() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  // Commits gid now on own (when the threads are behind) or hands it off.
  bool Commit(PGconn* own, const std::string& gid) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (gids_.size() < kQueue) {
        gids_.push_back(gid);
        cv_.notify_one();
        return true;
      }
    }
    return PgOk(own, "COMMIT PREPARED '" + gid + "'");
  }
  // Waits until every handed-off gid is committed; false if one failed.
  bool Drain() {
    std::unique_lock<std::mutex> lk(mu_);
    idle_.wait(lk, [&] { return gids_.empty() && busy_ == 0; });
    return failed_.exchange(0) == 0;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_, idle_;
  std::deque<std::string> gids_;
  int busy_ = 0;
  bool stop_ = false;
  std::atomic<long> failed_{0};
  std::vector<std::thread> threads_;
};

Result Run(const Args& a, int threads, const Op& op) {
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> lat(static_cast<size_t>(threads));
  std::atomic<long> done{0}, failed{0};
  std::vector<std::thread> ts;
  std::atomic<int> ready{0};
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      Local l;
      l.pg = PQconnectdb(a.pg.c_str());
      l.pg2 = PQconnectdb(a.pg2.c_str());
      sqlite3_open((a.dir + "/bench.db").c_str(), &l.db);
      sqlite3_busy_timeout(l.db, 60000);
      sqlite3_exec(l.db, "PRAGMA synchronous = FULL", nullptr, nullptr, nullptr);
      if (!a.mysql_socket.empty()) {
        l.my = mysql_init(nullptr);
        if (!mysql_real_connect(l.my, nullptr, "root", nullptr, a.mysql_db.c_str(), 0, a.mysql_socket.c_str(), 0)) {
          Die(std::string("MariaDB: ") + mysql_error(l.my));
        }
      }
      std::mt19937 rng(static_cast<unsigned>(t * 7919 + 1));
      ready++;
      while (ready < threads) std::this_thread::yield();
      for (long i = 0; !stop; ++i) {
        auto t0 = Clock::now();
        if (op(l, rng, t * 1000000L + i)) {
          lat[static_cast<size_t>(t)].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
          done++;
        } else {
          failed++;
        }
      }
    });
  }
  while (ready < threads) std::this_thread::yield();
  const auto start = Clock::now();
  const long done0 = done;
  const double client0 = xtm::bench::ProcessCpuSeconds();
  const double server0 = a.pg_data.empty() ? -1 : xtm::bench::ClusterCpuSeconds(a.pg_data);
  std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));
  // CPU is read while every connection is still open (a backend that has
  // exited takes its CPU time with it).
  const double client1 = xtm::bench::ProcessCpuSeconds();
  const double server1 = server0 < 0 ? -1 : xtm::bench::ClusterCpuSeconds(a.pg_data);
  const long done1 = done;
  stop = true;
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& th : ts) th.join();
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  Result r{static_cast<double>(done) / secs, xtm::bench::Percentile(all, 0.5), xtm::bench::Percentile(all, 0.99),
           failed};
  const double n = static_cast<double>(std::max(1L, done1 - done0));
  r.client_cpu_us = (client1 - client0) * 1e6 / n;
  if (server0 >= 0 && server1 >= 0) r.server_cpu_us = (server1 - server0) * 1e6 / n;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (a.Take(k, v)) continue;
    if (k == "--threads") {
      a.threads = xtm::bench::IntList(v);
    } else if (k == "--modes") {
      a.modes = xtm::bench::List(v);
    } else if (k == "--pg-data") {
      a.pg_data = v;
    } else if (k == "--store") {
      a.store = v;
    } else if (k == "--store2") {
      a.store2 = v;
    } else if (k == "--mysql-socket") {
      a.mysql_socket = v;
    } else if (k == "--mysql-db") {
      a.mysql_db = v;
    } else {
      Die("unknown option " + k);
    }
  }
  if (a.pg.empty() || a.pg2.empty()) Die("give --pg CONNINFO and --pg2 CONNINFO (two databases)");
  std::filesystem::remove_all(a.dir);
  std::filesystem::create_directories(a.dir + "/log");
  // The accounts, on every side.
  for (const std::string& ci : {a.pg, a.pg2}) {
    if (std::string e = xtm::bench::MakePgAccounts(ci, 1, kAccounts); !e.empty()) Die(e);
  }
  if (std::string e = xtm::bench::MakeSqliteAccounts(a.dir + "/bench.db", 1, kAccounts); !e.empty()) Die(e);
  {
    // manual-row's decision rows, shaped as the SQLite RM's xatm_decision.
    sqlite3* db = nullptr;
    if (sqlite3_open((a.dir + "/bench.db").c_str(), &db) != SQLITE_OK ||
        sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS bench_decision (gtrid BLOB PRIMARY KEY NOT NULL, "
                         "decided_at INTEGER NOT NULL) WITHOUT ROWID", nullptr, nullptr, nullptr) != SQLITE_OK) {
      Die(std::string("SQLite: ") + sqlite3_errmsg(db));
    }
    sqlite3_close(db);
  }
  const bool with_mysql = !a.mysql_socket.empty();
  if (with_mysql) {
    MYSQL* my = mysql_init(nullptr);
    if (!mysql_real_connect(my, nullptr, "root", nullptr, nullptr, 0, a.mysql_socket.c_str(), 0)) {
      Die(std::string("MariaDB: ") + mysql_error(my));
    }
    const std::string db = a.mysql_db;
    for (const std::string& sql :
         {"DROP DATABASE IF EXISTS " + db, "CREATE DATABASE " + db,
          "CREATE TABLE " + db + ".accounts (id int PRIMARY KEY, balance bigint NOT NULL) ENGINE=InnoDB",
          "INSERT INTO " + db + ".accounts SELECT seq, 0 FROM seq_1_to_" + std::to_string(kAccounts)}) {
      if (mysql_query(my, sql.c_str()) != 0) Die("MariaDB: " + sql + ": " + mysql_error(my));
      if (sql.rfind("CREATE DATABASE", 0) == 0) mysql_select_db(my, db.c_str());
    }
    mysql_close(my);
  }
  const std::string mysql_info = "socket=" + a.mysql_socket + " user=root database=" + a.mysql_db;
  // One TM per setting, each with its own log.
  auto open_tm = [&](const std::string& name, std::vector<std::pair<const char*, const char*>> settings) {
    std::filesystem::create_directories(a.dir + "/" + name);
    xatm_config* cfg = nullptr;
    xatm_config_new(&cfg);
    xatm_config_set(cfg, "log_dir", (a.dir + "/" + name).c_str());
    xatm_config_set(cfg, "log_level", "warn");
    for (const auto& [k, v] : settings) xatm_config_set(cfg, k, v);
    xatm_config_add_pgsql(cfg, "bank", a.pg.c_str());
    xatm_config_add_pgsql(cfg, "bank2", a.pg2.c_str());
    xatm_config_add_sqlite(cfg, "ledger", ("path=" + a.dir + "/bench.db busy_timeout_ms=60000").c_str());
    if (with_mysql) xatm_config_add_mysql(cfg, "shop", mysql_info.c_str());
    xatm* t = nullptr;
    if (xatm_open_config(cfg, &t) != XATM_OK) Die(xatm_errmsg(t));
    xatm_config_free(cfg);
    return t;
  };
  xatm* tm = open_tm("log", {});
  xatm* lrc = open_tm("log-lrc", {{"last_resource_commit", "true"}});
  xatm* bg = open_tm("log-bg", {{"background_phase_two", "true"}});
  xatm* lrc_bg = open_tm("log-lrc-bg", {{"last_resource_commit", "true"}, {"background_phase_two", "true"}});
  xatm* tpc = open_tm("log-2pc", {{"last_resource_commit", "false"}});
  xatm* tpc_bg = open_tm("log-2pc-bg", {{"last_resource_commit", "false"}, {"background_phase_two", "true"}});
  auto open_store_tm = [&](const std::string& conninfo, const std::string& name) -> xatm* {
    if (conninfo.empty()) return nullptr;
    return open_tm(name, {{"last_resource_commit", "false"}, {"log_store", "postgresql"},
                                     {"log_conninfo", conninfo.c_str()}, {"node_name", "bench"}});
  };
  xatm* tpc_store = open_store_tm(a.store, "log-2pc-store");
  xatm* tpc_store2 = open_store_tm(a.store2, "log-2pc-store2");

  auto pick = [](std::mt19937& r) { return 1 + static_cast<int>(r() % kAccounts); };
  std::map<std::string, Op> modes;
  modes["local"] = [&](Local& l, std::mt19937& r, long) {
    bool ok = PgOk(l.pg, "BEGIN") && PgOk(l.pg, Update(pick(r))) && PgOk(l.pg, "COMMIT");
    std::string s = "BEGIN IMMEDIATE; " + Update(pick(r)) + "; COMMIT";
    return ok && sqlite3_exec(l.db, s.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
  };
  auto transfer = [&](xatm* t, std::mt19937& r) {
    xatm_tx* tx = nullptr;
    if (xatm_start(t, &tx) != XATM_OK) return false;
    PGconn* pg = xatm_pgconn(tx, "bank");
    sqlite3* db = xatm_sqlite(tx, "ledger");
    bool ok = pg && db && PgOk(pg, Update(pick(r))) &&
              sqlite3_exec(db, Update(pick(r)).c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
    ok = ok ? xatm_commit(tx) == XATM_OK : (xatm_rollback(tx), false);
    xatm_tx_free(tx);
    return ok;
  };
  modes["local-pg2"] = [&](Local& l, std::mt19937& r, long) {
    return PgOk(l.pg, "BEGIN") && PgOk(l.pg, Update(pick(r))) && PgOk(l.pg, "COMMIT") && PgOk(l.pg2, "BEGIN") &&
           PgOk(l.pg2, Update(pick(r))) && PgOk(l.pg2, "COMMIT");
  };
  auto pg2 = [&](xatm* t, std::mt19937& r) {
    xatm_tx* tx = nullptr;
    if (xatm_start(t, &tx) != XATM_OK) return false;
    PGconn* p1 = xatm_pgconn(tx, "bank");
    PGconn* p2 = xatm_pgconn(tx, "bank2");
    bool ok = p1 && p2 && PgOk(p1, Update(pick(r))) && PgOk(p2, Update(pick(r)));
    ok = ok ? xatm_commit(tx) == XATM_OK : (xatm_rollback(tx), false);
    xatm_tx_free(tx);
    return ok;
  };
  auto my_ok = [](MYSQL* my, const std::string& sql) { return my && mysql_real_query(my, sql.data(), sql.size()) == 0; };
  modes["local-my"] = [&](Local& l, std::mt19937& r, long) {
    return PgOk(l.pg, "BEGIN") && PgOk(l.pg, Update(pick(r))) && PgOk(l.pg, "COMMIT") && my_ok(l.my, "BEGIN") &&
           my_ok(l.my, Update(pick(r))) && my_ok(l.my, "COMMIT");
  };
  auto pg_my = [&](xatm* t, std::mt19937& r) {
    xatm_tx* tx = nullptr;
    if (xatm_start(t, &tx) != XATM_OK) return false;
    PGconn* pg = xatm_pgconn(tx, "bank");
    MYSQL* my = xatm_mysql(tx, "shop");
    bool ok = pg && my && PgOk(pg, Update(pick(r))) && my_ok(my, Update(pick(r)));
    ok = ok ? xatm_commit(tx) == XATM_OK : (xatm_rollback(tx), false);
    xatm_tx_free(tx);
    return ok;
  };
  modes["manual-my"] = [&](Local& l, std::mt19937& r, long id) {
    const std::string g = "bench-my-" + std::to_string(id);
    const std::string x = "'" + g + "'";
    return PgOk(l.pg, "BEGIN") && PgOk(l.pg, Update(pick(r))) && my_ok(l.my, "XA START " + x) &&
           my_ok(l.my, Update(pick(r))) && my_ok(l.my, "XA END " + x) && PgOk(l.pg, "PREPARE TRANSACTION " + x) &&
           my_ok(l.my, "XA PREPARE " + x) && PgOk(l.pg, "COMMIT PREPARED " + x) && my_ok(l.my, "XA COMMIT " + x);
  };
  // The xatm modes: one TM per setting, each mode on one of them. Its
  // counters tell how many commits shared each sync of the decision log.
  std::map<std::string, xatm*> tm_of = {{"xatm", tm},       {"xatm-lrc", lrc},    {"xatm-bg", bg},
                                        {"xatm-lrc-bg", lrc_bg}, {"xatm-2pc", tpc}, {"xatm-2pc-bg", tpc_bg}};
  if (tpc_store) tm_of["xatm-2pc-store"] = tpc_store;
  if (tpc_store2) tm_of["xatm-2pc-store2"] = tpc_store2;
  std::map<std::string, xatm*> tm_of_mode;
  for (const auto& [name, t] : tm_of) {
    modes[name] = [&transfer, t = t](Local&, std::mt19937& r, long) { return transfer(t, r); };
    modes[name + "-pg2"] = [&pg2, t = t](Local&, std::mt19937& r, long) { return pg2(t, r); };
    modes[name + "-my"] = [&pg_my, t = t](Local&, std::mt19937& r, long) { return pg_my(t, r); };
    tm_of_mode[name] = tm_of_mode[name + "-pg2"] = tm_of_mode[name + "-my"] = t;
  }
  // By hand, nothing recorded: PostgreSQL prepared, SQLite committed; then
  // PostgreSQL's COMMIT PREPARED on the caller's thread or a background one.
  auto prepare_by_hand = [&](Local& l, std::mt19937& r, const std::string& g) {
    std::string s = "BEGIN IMMEDIATE; " + Update(pick(r));
    return PgOk(l.pg, "BEGIN") && PgOk(l.pg, Update(pick(r))) &&
           sqlite3_exec(l.db, s.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK &&
           PgOk(l.pg, "PREPARE TRANSACTION '" + g + "'") &&
           sqlite3_exec(l.db, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
  };
  modes["manual"] = [&](Local& l, std::mt19937& r, long id) {
    const std::string g = "bench-" + std::to_string(id);
    return prepare_by_hand(l, r, g) && PgOk(l.pg, "COMMIT PREPARED '" + g + "'");
  };
  // The same with a decision row in SQLite's commit, as the RM's last
  // resource writes it (a 20-byte gtrid; the row of the thread's transaction
  // before deleted in the same commit; replaced, as rounds reuse ids): the
  // floor plus what a crash-safe last-resource decision costs SQLite.
  modes["manual-row"] = [&](Local& l, std::mt19937& r, long id) {
    const std::string g = "bench-" + std::to_string(id);
    char gtrid[41];
    std::snprintf(gtrid, sizeof gtrid, "%040lx", id);
    char before[41];
    std::snprintf(before, sizeof before, "%040lx", id - 1);
    const std::string s = "BEGIN IMMEDIATE; " + Update(pick(r)) + "; INSERT OR REPLACE INTO bench_decision VALUES (x'" + gtrid +
                          "', 0); DELETE FROM bench_decision WHERE gtrid = x'" + before + "'";
    return PgOk(l.pg, "BEGIN") && PgOk(l.pg, Update(pick(r))) &&
           sqlite3_exec(l.db, s.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK &&
           PgOk(l.pg, "PREPARE TRANSACTION '" + g + "'") &&
           sqlite3_exec(l.db, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK &&
           PgOk(l.pg, "COMMIT PREPARED '" + g + "'");
  };
  BackgroundCommits background(a.pg);
  modes["manual-bg"] = [&](Local& l, std::mt19937& r, long id) {
    const std::string g = "bench-bg-" + std::to_string(id);
    return prepare_by_hand(l, r, g) && background.Commit(l.pg, g);
  };
  modes["manual-pg2"] = [&](Local& l, std::mt19937& r, long id) {
    const std::string g = "bench-" + std::to_string(id);
    return PgOk(l.pg, "BEGIN") && PgOk(l.pg, Update(pick(r))) && PgOk(l.pg2, "BEGIN") &&
           PgOk(l.pg2, Update(pick(r))) && PgOk(l.pg, "PREPARE TRANSACTION '" + g + "a'") &&
           PgOk(l.pg2, "PREPARE TRANSACTION '" + g + "b'") && PgOk(l.pg, "COMMIT PREPARED '" + g + "a'") &&
           PgOk(l.pg2, "COMMIT PREPARED '" + g + "b'");
  };
  std::vector<std::string> order = {"local",       "xatm",         "xatm-2pc",    "xatm-bg",
                                    "xatm-2pc-bg", "manual",       "local-pg2",   "xatm-pg2",
                                    "xatm-lrc-pg2", "xatm-bg-pg2", "xatm-lrc-bg-pg2", "manual-pg2"};
  // Classic two-phase commit either way: xatm-2pc-pg2 is xatm-pg2's protocol.
  for (const auto& [suffix, t] : {std::pair<std::string, xatm*>{"store", tpc_store}, {"store2", tpc_store2}}) {
    if (t == nullptr) continue;
    modes["xatm-" + suffix + "-pg2"] = modes["xatm-2pc-" + suffix + "-pg2"];
    tm_of_mode["xatm-" + suffix + "-pg2"] = t;
    order.insert(order.begin() + 3, "xatm-2pc-" + suffix);
    order.push_back("xatm-" + suffix + "-pg2");
  }
  if (with_mysql) {
    for (const char* m : {"local-my", "xatm-my", "xatm-lrc-my", "manual-my"}) order.push_back(m);
  }
  if (!a.modes.empty()) {
    for (const std::string& m : a.modes) {
      if (!modes.count(m)) Die("unknown mode " + m);
    }
    order = a.modes;
  }
  std::map<std::pair<std::string, int>, std::vector<Result>> results;
  std::ofstream csv(a.csv);
  csv << "round,mode,threads,tps,p50_us,p99_us,failed,commits,log_syncs,client_cpu_us,server_cpu_us\n";
  for (int round = 0; round < a.rounds; ++round) {
    for (int threads : a.threads) {
      for (const std::string& m : order) {
        auto it = tm_of_mode.find(m);
        xatm_stats before{}, after{};
        if (it != tm_of_mode.end()) xatm_get_stats(it->second, &before);
        Result r = Run(a, threads, modes[m]);
        if (m == "manual-bg" && !background.Drain()) Die("a background COMMIT PREPARED failed");
        if (it != tm_of_mode.end()) {
          xatm_get_stats(it->second, &after);
          r.commits = after.committed - before.committed;
          r.log_syncs = after.log_syncs - before.log_syncs;
        }
        results[{m, threads}].push_back(r);
        csv << round << "," << m << "," << threads << "," << r.tps << "," << r.p50_us << "," << r.p99_us << ","
            << r.failed << "," << r.commits << "," << r.log_syncs << "," << r.client_cpu_us << "," << r.server_cpu_us
            << "\n";
        std::fprintf(stderr, "round %d: %-10s %2d threads %8.0f tx/s\n", round, m.c_str(), threads, r.tps);
      }
    }
  }
  for (const auto& [name, t] : tm_of) xatm_close(t);
  auto median = [](const std::vector<Result>& v) { return xtm::bench::MedianBy(v, &Result::tps); };
  std::ofstream summary(a.csv + ".summary.csv");
  // CPU per transaction (client + server), the median of the rounds: steadier
  // than throughput on a machine whose speed drifts.
  auto cpu = [&](const std::string& m, int threads) {
    auto it = results.find({m, threads});
    if (it == results.end()) return 0.0;
    std::vector<double> v;
    for (const Result& x : it->second) v.push_back(x.client_cpu_us + std::max(0.0, x.server_cpu_us));
    return xtm::bench::Percentile(v, 0.5);
  };
  const bool server_cpu = !a.pg_data.empty();
  summary << "mode,threads,tps,p50_us,p99_us,time_vs_local,commits_per_log_sync,cpu_us,cpu_vs_local\n";
  std::printf("| threads | mode | tx/s | p50 ms | p99 ms | time vs local | CPU µs/tx%s | CPU vs local | commits per log "
              "sync |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
              server_cpu ? " (TM + PostgreSQL)" : " (this process)");
  for (int threads : a.threads) {
    // Each round's throughput ratio of the local mode to this one, then the
    // median over the rounds (0 without a local mode in the run).
    auto paired = [&](const std::string& m, const std::string& ref) {
      auto base = results.find({ref, threads}), it = results.find({m, threads});
      if (base == results.end() || it == results.end()) return 0.0;
      std::vector<double> v;
      for (size_t i = 0; i < base->second.size() && i < it->second.size(); ++i) {
        if (it->second[i].tps > 0) v.push_back(base->second[i].tps / it->second[i].tps);
      }
      return xtm::bench::Percentile(v, 0.5);
    };
    const double cbase = cpu("local", threads), cbase2 = cpu("local-pg2", threads);
    for (const std::string& m : order) {
      Result r = median(results[{m, threads}]);
      const bool two = m.find("pg2") != std::string::npos;
      const bool my = m.size() > 3 && m.compare(m.size() - 3, 3, "-my") == 0;
      const double ratio = paired(m, two ? "local-pg2" : my ? "local-my" : "local");
      const double c = cpu(m, threads), cref = two ? cbase2 : my ? cpu("local-my", threads) : cbase;
      const double cratio = cref > 0 ? c / cref : 0.0;
      // Over every round: commits / syncs of the decision log ("–": none synced).
      uint64_t commits = 0, syncs = 0;
      for (const Result& x : results[{m, threads}]) commits += x.commits, syncs += x.log_syncs;
      char per_sync[32] = "";
      if (tm_of_mode.count(m)) {
        if (syncs == 0) {
          std::snprintf(per_sync, sizeof per_sync, "–");
        } else {
          std::snprintf(per_sync, sizeof per_sync, "%.2f", static_cast<double>(commits) / static_cast<double>(syncs));
        }
      }
      std::printf("| %d | %s | %.0f | %.2f | %.2f | %.2f× | %.0f | %.2f× | %s |\n", threads, m.c_str(), r.tps,
                  r.p50_us / 1000, r.p99_us / 1000, ratio, c, cratio, per_sync);
      summary << m << "," << threads << "," << r.tps << "," << r.p50_us << "," << r.p99_us << "," << ratio << ","
              << (syncs == 0 ? 0.0 : static_cast<double>(commits) / static_cast<double>(syncs)) << "," << c << ","
              << cratio << "\n";
    }
  }
  return 0;
}
