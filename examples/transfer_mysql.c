/* transfer_mysql.c - moves money between a PostgreSQL account (alice) and a
 * MariaDB/MySQL account (carol) as single global transactions, then shows
 * that a transfer that breaks a CHECK constraint on either side leaves both
 * databases untouched.
 *
 *   transfer_mysql CONFIG
 *
 * Tables: bank_pg.sql in the PostgreSQL database ("bank"), bank_mysql.sql in
 * the MariaDB database ("shop").
 */
#include <stdio.h>
#include <stdlib.h>

#include <libpq-fe.h>
#include <mysql.h>

#include <xatm/xatm.h>

static xatm *tm;

static long one_number_pg(PGconn *pg, const char *sql) {
  long v = -1;
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) v = atol(PQgetvalue(r, 0, 0));
  PQclear(r);
  return v;
}

static long one_number_my(MYSQL *my, const char *sql) {
  long v = -1;
  MYSQL_RES *res;
  MYSQL_ROW row;
  if (mysql_query(my, sql) != 0) return -1;
  res = mysql_store_result(my);
  if (res != NULL && (row = mysql_fetch_row(res)) != NULL && row[0] != NULL) v = atol(row[0]);
  mysql_free_result(res);
  return v;
}

/* Both balances, read inside one global transaction. */
static void show(const char *when) {
  xatm_tx *tx;
  long alice, carol;
  if (xatm_start(tm, &tx) != XATM_OK) return;
  alice = one_number_pg(xatm_pgconn(tx, "bank"), "SELECT balance FROM accounts WHERE name = 'alice'");
  carol = one_number_my(xatm_mysql(tx, "shop"), "SELECT balance FROM accounts WHERE name = 'carol'");
  xatm_commit(tx); /* read-only on both sides: nothing is logged */
  xatm_tx_free(tx);
  printf("  %-44s alice (PostgreSQL) %4ld   carol (MariaDB) %4ld   total %ld\n", when, alice, carol, alice + carol);
}

/* Moves amount from alice (PostgreSQL) to carol (MariaDB); a negative amount
 * moves it back. Returns xatm_commit's code. */
static int transfer(int amount) {
  xatm_tx *tx;
  PGconn *pg;
  MYSQL *my;
  PGresult *r;
  char sql[128];
  int rc;

  rc = xatm_start(tm, &tx);
  if (rc != XATM_OK) return rc;
  pg = xatm_pgconn(tx, "bank"); /* joins the PostgreSQL branch */
  my = xatm_mysql(tx, "shop");  /* joins the MariaDB branch (ask for it in every transaction) */
  if (pg == NULL || my == NULL) {
    fprintf(stderr, "transfer: %s\n", xatm_errmsg(tm));
    xatm_tx_free(tx);
    return XATM_ERM;
  }
  snprintf(sql, sizeof sql, "UPDATE accounts SET balance = balance - %d WHERE name = 'alice'", amount);
  r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) printf("    PostgreSQL refused: %s", PQresultErrorMessage(r));
  PQclear(r);
  snprintf(sql, sizeof sql, "UPDATE accounts SET balance = balance + %d WHERE name = 'carol'", amount);
  /* A failed statement makes the MariaDB branch vote no at commit: the
   * program need not check it to stay atomic (it does, to say why). */
  if (mysql_query(my, sql) != 0) printf("    MariaDB refused: %s\n", mysql_error(my));
  /* Both phases: each branch prepared, the decision logged, both committed. */
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

  printf("transfer 30 from alice to carol\n");
  ok &= transfer(30) == XATM_OK;
  show("committed on both:");

  printf("transfer 30 back from carol to alice\n");
  ok &= transfer(-30) == XATM_OK;
  show("committed on both:");

  printf("transfer 5000 from alice (more than she has: CHECK fails in PostgreSQL)\n");
  ok &= transfer(5000) == XATM_EROLLEDBACK;
  show("rolled back on both:");

  printf("transfer 5000 from carol (more than she has: CHECK fails in MariaDB)\n");
  ok &= transfer(-5000) == XATM_EROLLEDBACK;
  show("rolled back on both:");

  rc = xatm_close(tm);
  printf("%s\n", ok && rc == XATM_OK ? "transfer_mysql: every outcome as expected" : "transfer_mysql: UNEXPECTED OUTCOME");
  return ok && rc == XATM_OK ? 0 : 1;
}
