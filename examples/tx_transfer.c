/* tx_transfer.c - transfer.c written against the X/Open TX interface (tx.h),
 * as programs for Tuxedo or LIXA are: tx_open, tx_begin, tx_commit, with the
 * RM handles of the thread's current transaction from xatm_tx_pgconn and
 * xatm_tx_sqlite. Chained transactions: each commit begins the next.
 *
 *   XATM_CONFIG=CONFIG tx_transfer
 *
 * Tables: bank_pg.sql in the PostgreSQL database ("bank"), bank_sqlite.sql in
 * the SQLite file ("ledger").
 */
#include <stdio.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include <xatm/tx.h>

/* The statements of one transfer inside the current transaction; the
 * outcome is tx_commit's. */
static int transfer(int amount) {
  char sql[128];
  PGresult *r;
  snprintf(sql, sizeof sql, "UPDATE accounts SET balance = balance - %d WHERE name = 'alice'", amount);
  r = PQexec(xatm_tx_pgconn("bank"), sql);
  PQclear(r);
  snprintf(sql, sizeof sql, "UPDATE accounts SET balance = balance + %d WHERE name = 'bob'", amount);
  sqlite3_exec(xatm_tx_sqlite("ledger"), sql, NULL, NULL, NULL);
  return tx_commit(); /* chained: the next transaction has begun */
}

int main(void) {
  int rc, ok = 1;
  if ((rc = tx_open()) != TX_OK) {
    fprintf(stderr, "tx_open: %d: %s\n", rc, xatm_tx_errmsg());
    return 1;
  }
  tx_set_transaction_control(TX_CHAINED);
  if (tx_begin() != TX_OK) {
    fprintf(stderr, "tx_begin: %s\n", xatm_tx_errmsg());
    return 1;
  }
  rc = transfer(30);
  printf("transfer 30 from alice to bob: %s\n", rc == TX_OK ? "TX_OK" : "failed");
  ok &= rc == TX_OK;
  rc = transfer(-30);
  printf("transfer 30 back: %s\n", rc == TX_OK ? "TX_OK" : "failed");
  ok &= rc == TX_OK;
  rc = transfer(5000);
  printf("transfer 5000 from alice (CHECK fails in PostgreSQL): %s\n", rc == TX_ROLLBACK ? "TX_ROLLBACK" : "?");
  ok &= rc == TX_ROLLBACK;
  tx_set_transaction_control(TX_UNCHAINED);
  ok &= tx_rollback() == TX_OK; /* the last chained transaction, empty */
  ok &= tx_close() == TX_OK;
  printf("%s\n", ok ? "tx_transfer: every outcome as expected" : "tx_transfer: UNEXPECTED OUTCOME");
  return ok ? 0 : 1;
}
