/* transfer.c - moves money from a PostgreSQL account to a SQLite account and
 * back as single global transactions, then shows that a transfer that breaks
 * a CHECK constraint on either side leaves both databases untouched.
 *
 *   transfer CONFIG
 *
 * Tables: bank_pg.sql in the PostgreSQL database ("bank"), bank_sqlite.sql in
 * the SQLite file ("ledger").
 */
#include <stdio.h>
#include <stdlib.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include <xatm/xatm.h>

static xatm *tm;

/* Both balances, read inside one global transaction. */
static void show(const char *when) {
  xatm_tx *tx;
  PGresult *r;
  sqlite3_stmt *st;
  long alice = -1, bob = -1;
  if (xatm_start(tm, &tx) != XATM_OK) return;
  r = PQexec(xatm_pgconn(tx, "bank"), "SELECT balance FROM accounts WHERE name = 'alice'");
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) alice = atol(PQgetvalue(r, 0, 0));
  PQclear(r);
  if (sqlite3_prepare_v2(xatm_sqlite(tx, "ledger"), "SELECT balance FROM accounts WHERE name = 'bob'", -1, &st,
                         NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    bob = (long)sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  xatm_commit(tx); /* read-only on both sides: nothing is logged */
  xatm_tx_free(tx);
  printf("  %-44s alice (PostgreSQL) %4ld   bob (SQLite) %4ld   total %ld\n", when, alice, bob, alice + bob);
}

/* Moves amount from alice (PostgreSQL) to bob (SQLite); a negative amount
 * moves it back. Returns xatm_commit's code. */
static int transfer(int amount) {
  xatm_tx *tx;
  PGconn *pg;
  sqlite3 *db;
  PGresult *r;
  char sql[128];
  int rc;

  rc = xatm_start(tm, &tx);
  if (rc != XATM_OK) return rc;
  pg = xatm_pgconn(tx, "bank");   /* joins the PostgreSQL branch */
  db = xatm_sqlite(tx, "ledger"); /* joins the SQLite branch */
  if (pg == NULL || db == NULL) {
    fprintf(stderr, "transfer: %s\n", xatm_errmsg(tm));
    xatm_tx_free(tx);
    return XATM_ERM;
  }
  snprintf(sql, sizeof sql, "UPDATE accounts SET balance = balance - %d WHERE name = 'alice'", amount);
  r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) printf("    PostgreSQL refused: %s", PQresultErrorMessage(r));
  PQclear(r);
  snprintf(sql, sizeof sql, "UPDATE accounts SET balance = balance + %d WHERE name = 'bob'", amount);
  if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
    /* SQLite keeps its transaction after a failed statement: roll back. */
    printf("    SQLite refused: %s\n", sqlite3_errmsg(db));
    xatm_rollback(tx);
    xatm_tx_free(tx);
    return XATM_EROLLEDBACK;
  }
  /* Both phases: PostgreSQL prepared, then SQLite committed with the decision
   * inside its own transaction, then PostgreSQL committed. */
  rc = xatm_commit(tx);
  if (rc != XATM_OK) printf("    xatm_commit: %s: %s\n", xatm_errstr(rc), xatm_errmsg(tm));
  xatm_tx_free(tx);
  return rc;
}

int main(int argc, char **argv) {
  int ok = 1, rc;
  if (argc != 2) {
    fprintf(stderr, "usage: %s CONFIG\n", argv[0]);
    return 2;
  }
  rc = xatm_open(argv[1], &tm); /* opens both RMs and runs recovery */
  if (rc != XATM_OK) {
    fprintf(stderr, "xatm_open: %s: %s\n", xatm_errstr(rc), xatm_errmsg(tm));
    xatm_close(tm);
    return 1;
  }
  show("before:");

  printf("transfer 30 from alice to bob\n");
  ok &= transfer(30) == XATM_OK;
  show("committed on both:");

  printf("transfer 30 back from bob to alice\n");
  ok &= transfer(-30) == XATM_OK;
  show("committed on both:");

  printf("transfer 5000 from alice (more than she has: CHECK fails in PostgreSQL)\n");
  ok &= transfer(5000) == XATM_EROLLEDBACK;
  show("rolled back on both:");

  printf("transfer 5000 from bob (more than he has: CHECK fails in SQLite)\n");
  ok &= transfer(-5000) == XATM_EROLLEDBACK;
  show("rolled back on both:");

  rc = xatm_close(tm);
  printf("%s\n", ok && rc == XATM_OK ? "transfer: every outcome as expected" : "transfer: UNEXPECTED OUTCOME");
  return ok && rc == XATM_OK ? 0 : 1;
}
