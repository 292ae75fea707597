// xatm-recovery-bench: how long recovery takes for many in-doubt
// transactions across PostgreSQL and SQLite. It makes N transactions of a
// dead TM incarnation, each with a prepared PostgreSQL branch and a prepared
// SQLite branch; half of them have a COMMIT record in the decision log. Then
// it times xatm_open, whose recovery commits the decided half and rolls back
// the rest, and checks that nothing is left in doubt.
//
// With --last-resource, what the default settings leave: each transaction
// has a prepared PostgreSQL branch only, and the decided half committed its
// SQLite branch in one phase with the decision row (xatm_decision) inside it.
//
//   xatm-recovery-bench --pg CONNINFO --dir DIR [--count N] [--last-resource]
//   (PostgreSQL needs max_prepared_transactions >= N; bench/run-recovery-bench.sh
//    starts such a server.)
#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "core/gtrid.h"
#include "log/decision_log.h"
#include "sqlite/sqlite_rm.h"
#include "bench_util.h"
#include "xatm/rm_pgsql.h"
#include "xatm/rm_sqlite.h"
#include "xatm/xatm.h"

namespace {

using Clock = std::chrono::steady_clock;

void Die(const std::string& m) {
  std::fprintf(stderr, "xatm-recovery-bench: %s\n", m.c_str());
  std::exit(1);
}

void Check(int rc, int want, const char* what, int rmid) {
  if (rc != want) {
    const char* e = rmid == 1 ? xatm_pgsql_errmsg(rmid) : xatm_sqlite_errmsg(rmid);
    Die(std::string(what) + " returned " + std::to_string(rc) + ": " + e);
  }
}

long PgCount(const std::string& ci, const std::string& sql) {
  PGconn* c = PQconnectdb(ci.c_str());
  PGresult* r = PQexec(c, sql.c_str());
  long v = PQresultStatus(r) == PGRES_TUPLES_OK ? std::atol(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  PQfinish(c);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::string pg, dir = "recovery-bench";
  long count = 10000;
  bool last_resource = false;
  const std::string bad = xtm::bench::Options(
      argc, argv, {{"--last-resource", &last_resource}}, [&](const std::string& k, const std::string& v) {
        if (k == "--pg") pg = v;
        else if (k == "--dir") dir = v;
        else if (k == "--count") count = std::atol(v.c_str());
        else return false;
        return true;
      });
  if (!bad.empty()) Die(bad);
  if (pg.empty()) Die("give --pg CONNINFO");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/log");
  const std::string db_path = dir + "/ledger.db";
  if (std::string e = xtm::bench::MakePgAccounts(pg, 0, count); !e.empty()) Die(e);
  if (std::string e = xtm::bench::MakeSqliteAccounts(db_path, 0, count); !e.empty()) Die(e);
  // The log, and its node id: the transactions below belong to incarnation 1,
  // which is dead by the time recovery runs.
  std::string node;
  {
    std::unique_ptr<xtm::log::DecisionLog> log;
    if (!xtm::log::DecisionLog::Open({.dir = dir + "/log", .node_name = "bench"}, &log).ok()) Die("cannot open the log");
    node = log->node().node_id;
  }
  std::string info_pg = pg, info_sq = "path=" + db_path;
  Check(xatm_pgsql_switch.xa_open_entry(info_pg.data(), 1, TMNOFLAGS), XA_OK, "pg xa_open", 1);
  Check(xatm_sqlite_switch.xa_open_entry(info_sq.data(), 2, TMNOFLAGS), XA_OK, "sqlite xa_open", 2);
  std::unique_ptr<xtm::log::DecisionLog> log;
  if (!xtm::log::DecisionLog::Open({.dir = dir + "/log", .node_name = "bench"}, &log).ok()) Die("cannot reopen the log");
  auto t0 = Clock::now();
  for (long i = 0; i < count; ++i) {
    const std::string g = xtm::tm::MakeGtrid(node, 1, static_cast<uint64_t>(i + 1));
    XID a = xtm::tm::MakeXid(g, xtm::tm::MakeBqual(0)), b = xtm::tm::MakeXid(g, xtm::tm::MakeBqual(1));
    const std::string upd = "UPDATE accounts SET balance = balance + 1 WHERE id = " + std::to_string(i);
    Check(xatm_pgsql_switch.xa_start_entry(&a, 1, TMNOFLAGS), XA_OK, "pg xa_start", 1);
    PQclear(PQexec(xatm_pgsql_conn(1), upd.c_str()));
    Check(xatm_pgsql_switch.xa_end_entry(&a, 1, TMSUCCESS), XA_OK, "pg xa_end", 1);
    Check(xatm_pgsql_switch.xa_prepare_entry(&a, 1, TMNOFLAGS), XA_OK, "pg xa_prepare", 1);
    if (last_resource) {
      // The decided half: SQLite committed last with its decision row. The
      // other half died before that commit: nothing of it in SQLite.
      if (i % 2 != 0) continue;
      Check(xatm_sqlite_switch.xa_start_entry(&b, 2, TMNOFLAGS), XA_OK, "sqlite xa_start", 2);
      sqlite3_exec(xatm_sqlite_db(2), upd.c_str(), nullptr, nullptr, nullptr);
      if (std::string e = xtm::sqlite::WriteDecisionRow(2, g, xtm::log::NowMs(), {}); !e.empty()) Die(e);
      Check(xatm_sqlite_switch.xa_end_entry(&b, 2, TMSUCCESS), XA_OK, "sqlite xa_end", 2);
      Check(xatm_sqlite_switch.xa_commit_entry(&b, 2, TMONEPHASE), XA_OK, "sqlite xa_commit", 2);
      continue;
    }
    Check(xatm_sqlite_switch.xa_start_entry(&b, 2, TMNOFLAGS), XA_OK, "sqlite xa_start", 2);
    sqlite3_exec(xatm_sqlite_db(2), upd.c_str(), nullptr, nullptr, nullptr);
    Check(xatm_sqlite_switch.xa_end_entry(&b, 2, TMSUCCESS), XA_OK, "sqlite xa_end", 2);
    Check(xatm_sqlite_switch.xa_prepare_entry(&b, 2, TMNOFLAGS), XA_OK, "sqlite xa_prepare", 2);
    // Drop the open transaction: the branch lives on in the sidecar, as after a crash.
    Check(xatm_sqlite_switch.xa_close_entry(info_sq.data(), 2, TMNOFLAGS), XA_OK, "sqlite xa_close", 2);
    Check(xatm_sqlite_switch.xa_open_entry(info_sq.data(), 2, TMNOFLAGS), XA_OK, "sqlite xa_open", 2);
    if (i % 2 == 0) {
      xtm::log::CommitRecord c;
      c.format_id = static_cast<int32_t>(xtm::tm::kFormatId);
      c.gtrid = g;
      c.time_ms = xtm::log::NowMs();
      c.branches = {{"bank", xtm::tm::MakeBqual(0)}, {"ledger", xtm::tm::MakeBqual(1)}};
      if (!log->Append(c).ok()) Die("cannot append a COMMIT record");
    }
  }
  const double setup_s = std::chrono::duration<double>(Clock::now() - t0).count();
  log.reset();
  xatm_pgsql_switch.xa_close_entry(info_pg.data(), 1, TMNOFLAGS);
  xatm_sqlite_switch.xa_close_entry(info_sq.data(), 2, TMNOFLAGS);
  std::printf("made %ld in-doubt transactions (%ld decided%s) in %.1f s\n", count, (count + 1) / 2,
              last_resource ? " by a decision row in SQLite" : " in the log", setup_s);

  xatm_config* cfg = nullptr;
  xatm_config_new(&cfg);
  xatm_config_set(cfg, "log_dir", (dir + "/log").c_str());
  xatm_config_set(cfg, "log_level", "warn");
  xatm_config_add_pgsql(cfg, "bank", pg.c_str());
  xatm_config_add_sqlite(cfg, "ledger", info_sq.c_str());
  xatm* tm = nullptr;
  t0 = Clock::now();
  int rc = xatm_open_config(cfg, &tm);  // recovery
  const double recovery_s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (rc != XATM_OK) Die(xatm_errmsg(tm));
  xatm_close(tm);
  xatm_config_free(cfg);
  const long pg_left = PgCount(pg, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()");
  const long pg_committed = PgCount(pg, "SELECT count(*) FROM accounts WHERE balance = 1");
  sqlite3* db = nullptr;
  sqlite3_open(db_path.c_str(), &db);
  sqlite3_stmt* st = nullptr;
  long sq_committed = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM accounts WHERE balance = 1", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    sq_committed = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  long rows_left = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM xatm_decision", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    rows_left = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  long sq_left = -1;
  sqlite3_open(xtm::sqlite::SidecarPath(db_path).c_str(), &db);
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM prepared", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    sq_left = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::printf("recovery of %ld in-doubt transactions (%ld PostgreSQL + %ld SQLite branches): %.2f s\n", count, count,
              last_resource ? 0 : count, recovery_s);
  std::printf("committed: %ld in PostgreSQL, %ld in SQLite (expected %ld each); still prepared: %ld in PostgreSQL, "
              "%ld in SQLite; decision rows left: %ld; peak RSS %ld MiB\n",
              pg_committed, sq_committed, (count + 1) / 2, pg_left, sq_left, rows_left, ru.ru_maxrss / 1024);
  return pg_left == 0 && sq_left == 0 && rows_left == 0 && pg_committed == (count + 1) / 2 &&
                 sq_committed == (count + 1) / 2
             ? 0
             : 1;
}
