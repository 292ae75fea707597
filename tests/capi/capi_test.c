/* The whole C API, from C99: configuration in code and from a file, global
 * transactions across PostgreSQL and SQLite, prepare/commit/rollback, errors,
 * recovery, listing, resolving and forgetting. A real PostgreSQL database and
 * a real SQLite file.
 *
 *   capi_test CONNINFO DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "xatm/rm_pgsql.h"
#include "xatm/xatm.h"

static int failures;
#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);        \
      failures++;                                                                     \
    }                                                                                 \
  } while (0)
#define CHECK_RC(tm, call, want)                                                      \
  do {                                                                                \
    int rc_ = (call);                                                                 \
    if (rc_ != (want)) {                                                              \
      fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d: %s\n", __FILE__, __LINE__, \
              #call, rc_, xatm_errstr(rc_), (want), xatm_errmsg(tm));                 \
      failures++;                                                                     \
    }                                                                                 \
  } while (0)

static long pg_long(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  long v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atol(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  return v;
}

static long sq_long(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  long v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    v = (long)sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  return v;
}

static int pg_ok(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  return ok;
}

int main(int argc, char **argv) {
  char path[4096], log_dir[4096], conf[4096], info[4200];
  PGconn *admin;
  sqlite3 *lite;
  xatm_config *cfg = NULL;
  xatm *tm = NULL;
  xatm_tx *tx = NULL;
  XID xid;
  xatm_indoubt *list = NULL;
  size_t n = 0, i;
  FILE *f;

  if (argc != 3) {
    fprintf(stderr, "usage: capi_test CONNINFO DIR\n");
    return 2;
  }
  snprintf(path, sizeof path, "%s/capi.db", argv[2]);
  snprintf(log_dir, sizeof log_dir, "%s/log", argv[2]);
  snprintf(conf, sizeof conf, "%s/capi.conf", argv[2]);

  admin = PQconnectdb(argv[1]);
  CHECK(PQstatus(admin) == CONNECTION_OK);
  CHECK(pg_ok(admin, "CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL CHECK (v >= 0))"));
  CHECK(pg_ok(admin, "INSERT INTO acct VALUES (1, 100)"));
  CHECK(sqlite3_open(path, &lite) == SQLITE_OK);
  CHECK(sqlite3_exec(lite, "PRAGMA journal_mode=WAL; CREATE TABLE acct (id INTEGER PRIMARY KEY, v INTEGER NOT NULL);"
                           "INSERT INTO acct VALUES (1, 100)", NULL, NULL, NULL) == SQLITE_OK);

  /* Library. */
  CHECK(strlen(xatm_version()) > 0);
  CHECK(strcmp(xatm_errstr(XATM_OK), "ok") == 0);
  CHECK(strlen(xatm_errstr(12345)) > 0);
  CHECK(strlen(xatm_errmsg(NULL)) > 0);
  CHECK(xatm_close(NULL) == XATM_OK);
  xatm_tx_free(NULL);
  xatm_config_free(NULL);
  xatm_indoubt_free(NULL);

  /* Configuration in code. */
  CHECK_RC(tm, xatm_config_new(&cfg), XATM_OK);
  CHECK_RC(tm, xatm_config_set(cfg, "colour", "blue"), XATM_ECONFIG);
  CHECK(strstr(xatm_config_errmsg(cfg), "colour") != NULL);
  CHECK_RC(tm, xatm_config_set(cfg, "timeout_s", "-3"), XATM_ECONFIG);
  CHECK_RC(tm, xatm_config_set(cfg, "log_dir", log_dir), XATM_OK);
  CHECK_RC(tm, xatm_config_set(cfg, "log_level", "warn"), XATM_OK);
  CHECK_RC(tm, xatm_config_add_pgsql(cfg, "bank", argv[1]), XATM_OK);
  snprintf(info, sizeof info, "path=%s busy_timeout_ms=5000", path);
  CHECK_RC(tm, xatm_config_add_sqlite(cfg, "ledger", info), XATM_OK);
  CHECK_RC(tm, xatm_config_add_switch(cfg, "raw", &xatm_pgsql_switch, argv[1]), XATM_OK);
  CHECK_RC(tm, xatm_config_add_pgsql(cfg, "bank", argv[1]), XATM_ECONFIG);
  CHECK_RC(tm, xatm_config_add_pgsql(cfg, "bad name!", argv[1]), XATM_ECONFIG);

  /* The log directory does not exist yet: a clear error, the handle set. */
  CHECK_RC(tm, xatm_open_config(cfg, &tm), XATM_ELOG);
  CHECK(tm != NULL && strstr(xatm_errmsg(tm), "does not exist") != NULL);
  CHECK_RC(tm, xatm_start(tm, &tx), XATM_EINVAL);
  CHECK_RC(tm, xatm_close(tm), XATM_OK);
  tm = NULL;
  {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", log_dir);
    CHECK(system(cmd) == 0);
  }
  CHECK_RC(tm, xatm_open_config(cfg, &tm), XATM_OK);
  xatm_config_free(cfg);

  /* A committed transfer across both. */
  CHECK_RC(tm, xatm_start(tm, &tx), XATM_OK);
  {
    PGconn *pg = xatm_pgconn(tx, "bank");
    sqlite3 *db = xatm_sqlite(tx, "ledger");
    CHECK(pg != NULL && db != NULL);
    CHECK(xatm_pgconn(tx, "bank") == pg); /* the same branch */
    CHECK(pg_ok(pg, "UPDATE acct SET v = v - 10 WHERE id = 1"));
    CHECK(sqlite3_exec(db, "UPDATE acct SET v = v + 10 WHERE id = 1", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(xatm_sqlite(tx, "bank") == NULL); /* wrong type */
    CHECK(strstr(xatm_errmsg(tm), "postgresql") != NULL);
    CHECK(xatm_pgconn(tx, "nope") == NULL);
    CHECK_RC(tm, xatm_join(tx, "nope"), XATM_ENOTFOUND);
  }
  CHECK_RC(tm, xatm_tx_xid(tx, &xid), XATM_OK);
  CHECK(xid.gtrid_length == 20 && xid.bqual_length == 0 && xid.formatID != -1);
  CHECK_RC(tm, xatm_commit(tx), XATM_OK);
  CHECK_RC(tm, xatm_commit(tx), XATM_EINVAL);
  xatm_tx_free(tx);
  CHECK(pg_long(admin, "SELECT v FROM acct WHERE id = 1") == 90);
  CHECK(sq_long(lite, "SELECT v FROM acct WHERE id = 1") == 110);

  /* A CHECK failure on PostgreSQL rolls both back. */
  CHECK_RC(tm, xatm_start(tm, &tx), XATM_OK);
  CHECK(sqlite3_exec(xatm_sqlite(tx, "ledger"), "UPDATE acct SET v = v + 1000", NULL, NULL, NULL) == SQLITE_OK);
  CHECK(!pg_ok(xatm_pgconn(tx, "bank"), "UPDATE acct SET v = v - 1000"));
  CHECK_RC(tm, xatm_commit(tx), XATM_EROLLEDBACK);
  CHECK(strlen(xatm_errmsg(tm)) > 0);
  xatm_tx_free(tx);
  CHECK(sq_long(lite, "SELECT v FROM acct WHERE id = 1") == 110);

  /* The handle's counters: one commit (with its durable log record), one rollback. */
  {
    xatm_stats stats;
    CHECK_RC(tm, xatm_get_stats(tm, &stats), XATM_OK);
    CHECK(stats.begun == 2 && stats.committed == 1 && stats.rolled_back == 1);
    CHECK(stats.log_records >= 1 && stats.log_syncs >= 1 && stats.log_syncs <= stats.log_writes);
    CHECK(stats.log_max_batch >= 1);
    CHECK(xatm_get_stats(tm, NULL) == XATM_EINVAL);
    CHECK(xatm_get_stats(NULL, &stats) == XATM_EINVAL);
  }

  /* Explicit rollback, and a third-party switch joined with xatm_join. */
  CHECK_RC(tm, xatm_start(tm, &tx), XATM_OK);
  CHECK_RC(tm, xatm_join(tx, "raw"), XATM_OK);
  CHECK(pg_ok(xatm_pgconn(tx, "bank"), "UPDATE acct SET v = 0"));
  CHECK_RC(tm, xatm_rollback(tx), XATM_OK);
  CHECK_RC(tm, xatm_rollback(tx), XATM_OK);
  xatm_tx_free(tx);
  CHECK(pg_long(admin, "SELECT v FROM acct WHERE id = 1") == 90);

  /* An unfinished transaction is rolled back by xatm_tx_free. */
  CHECK_RC(tm, xatm_start(tm, &tx), XATM_OK);
  CHECK(pg_ok(xatm_pgconn(tx, "bank"), "UPDATE acct SET v = 1"));
  xatm_tx_free(tx);
  CHECK(pg_long(admin, "SELECT v FROM acct WHERE id = 1") == 90);

  /* Prepared, then resolved by hand, then forgotten. */
  CHECK_RC(tm, xatm_start(tm, &tx), XATM_OK);
  CHECK(pg_ok(xatm_pgconn(tx, "bank"), "UPDATE acct SET v = v - 5"));
  CHECK(sqlite3_exec(xatm_sqlite(tx, "ledger"), "UPDATE acct SET v = v + 5", NULL, NULL, NULL) == SQLITE_OK);
  CHECK_RC(tm, xatm_prepare(tx), XATM_OK);
  CHECK_RC(tm, xatm_tx_xid(tx, &xid), XATM_OK);
  CHECK_RC(tm, xatm_indoubt_list(tm, &list, &n), XATM_OK);
  /* PostgreSQL's branch (seen through "bank" and through "raw", the same
   * database) and SQLite's. */
  CHECK(n == 3);
  for (i = 0; i < n; i++) {
    CHECK(list[i].ours == 1);
    CHECK(list[i].decision == XATM_DECISION_NONE);
    CHECK(memcmp(list[i].xid.data, xid.data, 20) == 0);
  }
  xatm_indoubt_free(list);
  CHECK_RC(tm, xatm_commit(tx), XATM_OK);
  xatm_tx_free(tx);
  CHECK(pg_long(admin, "SELECT v FROM acct WHERE id = 1") == 85);
  CHECK(sq_long(lite, "SELECT v FROM acct WHERE id = 1") == 115);

  /* Resolve by hand: a PostgreSQL branch prepared outside any TM is not ours. */
  {
    XID bad;
    memset(&bad, 0, sizeof bad);
    bad.formatID = 1;
    bad.gtrid_length = 3;
    memcpy(bad.data, "abc", 3);
    CHECK_RC(tm, xatm_resolve(tm, &bad, 1, "tester", "test"), XATM_ENOTFOUND);
    CHECK_RC(tm, xatm_forget(tm, &bad), XATM_ENOTFOUND);
    bad.gtrid_length = 0;
    CHECK_RC(tm, xatm_resolve(tm, &bad, 1, "tester", "test"), XATM_EINVAL);
  }
  CHECK_RC(tm, xatm_start(tm, &tx), XATM_OK);
  CHECK(pg_ok(xatm_pgconn(tx, "bank"), "UPDATE acct SET v = v - 1"));
  CHECK(sqlite3_exec(xatm_sqlite(tx, "ledger"), "UPDATE acct SET v = v + 1", NULL, NULL, NULL) == SQLITE_OK);
  CHECK_RC(tm, xatm_prepare(tx), XATM_OK);
  CHECK_RC(tm, xatm_tx_xid(tx, &xid), XATM_OK);
  CHECK_RC(tm, xatm_resolve(tm, &xid, 0, "tester", "rolled back by the C API test"), XATM_OK);
  CHECK(pg_long(admin, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()") == 0);
  CHECK_RC(tm, xatm_forget(tm, &xid), XATM_OK);
  CHECK_RC(tm, xatm_forget(tm, &xid), XATM_ENOTFOUND);
  xatm_tx_free(tx);
  CHECK(pg_long(admin, "SELECT v FROM acct WHERE id = 1") == 85);

  CHECK_RC(tm, xatm_recover(tm), XATM_OK);
  CHECK_RC(tm, xatm_close(tm), XATM_OK);

  /* The same configuration from a file. */
  f = fopen(conf, "w");
  CHECK(f != NULL);
  fprintf(f, "[tm]\nlog_dir = %s\nlog_level = warn\n\n[rm.bank]\ntype = postgresql\nconninfo = %s\n\n"
             "[rm.ledger]\ntype = sqlite\npath = %s\n", log_dir, argv[1], path);
  fclose(f);
  tm = NULL;
  CHECK_RC(tm, xatm_open(conf, &tm), XATM_OK);
  CHECK_RC(tm, xatm_start(tm, &tx), XATM_OK);
  CHECK(pg_ok(xatm_pgconn(tx, "bank"), "UPDATE acct SET v = v + 15"));
  CHECK(sqlite3_exec(xatm_sqlite(tx, "ledger"), "UPDATE acct SET v = v - 15", NULL, NULL, NULL) == SQLITE_OK);
  CHECK_RC(tm, xatm_commit(tx), XATM_OK);
  /* A transaction lives inside its handle: closing the handle while one is
   * not freed is refused (the handle stays open), and freeing it afterwards
   * touches no freed memory (the AddressSanitizer build runs this too). */
  CHECK_RC(tm, xatm_close(tm), XATM_EINVAL);
  CHECK(strstr(xatm_errmsg(tm), "xatm_tx_free") != NULL);
  xatm_tx_free(tx);
  CHECK_RC(tm, xatm_close(tm), XATM_OK);
  CHECK(pg_long(admin, "SELECT v FROM acct WHERE id = 1") == 100);
  CHECK(sq_long(lite, "SELECT v FROM acct WHERE id = 1") == 100);

  tm = NULL;
  CHECK_RC(tm, xatm_open("/nonexistent/xatm.conf", &tm), XATM_ECONFIG);
  CHECK(strstr(xatm_errmsg(tm), "/nonexistent/xatm.conf") != NULL);
  xatm_close(tm);

  sqlite3_close(lite);
  PQfinish(admin);
  if (failures == 0) printf("C API: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
