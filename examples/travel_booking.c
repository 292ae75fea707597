/* travel_booking.c - the classic two-phase commit example: a trip is a
 * flight seat (PostgreSQL) and a hotel room (SQLite), bought as one purchase.
 * If either is sold out, neither is booked.
 *
 *   travel_booking CONFIG
 *
 * Tables: bank_pg.sql ("bank") and bank_sqlite.sql ("ledger").
 */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include <xatm/xatm.h>

static int book(xatm *tm, const char *booking, const char *flight, const char *hotel) {
  xatm_tx *tx;
  PGconn *pg;
  sqlite3 *db;
  PGresult *r;
  char sql[256];
  int rc, sold_out = 0;

  if ((rc = xatm_start(tm, &tx)) != XATM_OK) return rc;
  pg = xatm_pgconn(tx, "bank");
  db = xatm_sqlite(tx, "ledger");
  if (pg == NULL || db == NULL) {
    xatm_tx_free(tx);
    return XATM_ERM;
  }
  /* The seat. */
  snprintf(sql, sizeof sql, "UPDATE flights SET seats_left = seats_left - 1 WHERE flight = '%s'", flight);
  r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) sold_out = 1;
  PQclear(r);
  snprintf(sql, sizeof sql, "INSERT INTO tickets VALUES ('%s', '%s')", booking, flight);
  PQclear(PQexec(pg, sql));
  /* The room. */
  snprintf(sql, sizeof sql,
           "UPDATE hotels SET rooms_left = rooms_left - 1 WHERE hotel = '%s';"
           "INSERT INTO reservations VALUES ('%s', '%s')",
           hotel, booking, hotel);
  if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) sold_out = 1;
  rc = sold_out ? (xatm_rollback(tx), XATM_EROLLEDBACK) : xatm_commit(tx);
  printf("  booking %-6s flight %s + hotel %-6s -> %s\n", booking, flight, hotel,
         rc == XATM_OK ? "booked (both)" : "not booked (neither)");
  xatm_tx_free(tx);
  return rc;
}

int main(int argc, char **argv) {
  xatm *tm = NULL;
  int ok = 1;
  if (argc != 2) {
    fprintf(stderr, "usage: %s CONFIG\n", argv[0]);
    return 2;
  }
  if (xatm_open(argv[1], &tm) != XATM_OK) {
    fprintf(stderr, "xatm_open: %s\n", xatm_errmsg(tm));
    xatm_close(tm);
    return 1;
  }
  printf("flight XA101 has 2 seats, the Grand has 1 room\n");
  ok &= book(tm, "trip-1", "XA101", "Grand") == XATM_OK;
  /* The hotel is now full: the second trip must not take a seat either. */
  ok &= book(tm, "trip-2", "XA101", "Grand") == XATM_EROLLEDBACK;
  xatm_close(tm);
  printf("%s\n", ok ? "travel_booking: every outcome as expected" : "travel_booking: UNEXPECTED OUTCOME");
  return ok ? 0 : 1;
}
