/* pgsql_switch.c - drives xatm's PostgreSQL resource manager directly through
 * its X/Open XA switch, as any XA transaction manager would: one branch is
 * prepared, found again by xa_recover, and committed.
 *
 *   pgsql_switch "host=/run/postgresql dbname=bank"
 */
#include <stdio.h>
#include <string.h>

#include <xatm/rm_pgsql.h>

static int check(const char *what, int rc, int want) {
  printf("%-40s -> %d\n", what, rc);
  if (rc != want) fprintf(stderr, "%s: expected %d: %s\n", what, want, xatm_pgsql_errmsg(1));
  return rc == want;
}

int main(int argc, char **argv) {
  struct xa_switch_t *sw = &xatm_pgsql_switch;
  const int rmid = 1;
  XID xid, found[8];
  PGconn *conn;
  PGresult *res;
  int n, i, ok = 1;

  if (argc != 2) {
    fprintf(stderr, "usage: %s CONNINFO\n", argv[0]);
    return 2;
  }
  if (!check("xa_open", sw->xa_open_entry(argv[1], rmid, TMNOFLAGS), XA_OK)) return 1;
  conn = xatm_pgsql_conn(rmid); /* this thread's connection for rmid */
  PQclear(PQexec(conn, "CREATE TABLE IF NOT EXISTS xatm_example (id int PRIMARY KEY, note text)"));

  /* A branch XID: formatID, then gtrid and bqual bytes in data[]. */
  memset(&xid, 0, sizeof xid);
  xid.formatID = 0x4558; /* any value but -1 */
  xid.gtrid_length = 6;
  xid.bqual_length = 2;
  memcpy(xid.data, "order1" "b1", 8);

  ok &= check("xa_start(TMNOFLAGS)", sw->xa_start_entry(&xid, rmid, TMNOFLAGS), XA_OK);
  res = PQexec(conn, "INSERT INTO xatm_example VALUES (1, 'written in a branch') "
                     "ON CONFLICT (id) DO UPDATE SET note = excluded.note");
  ok &= PQresultStatus(res) == PGRES_COMMAND_OK;
  PQclear(res);
  ok &= check("xa_end(TMSUCCESS)", sw->xa_end_entry(&xid, rmid, TMSUCCESS), XA_OK);
  ok &= check("xa_prepare", sw->xa_prepare_entry(&xid, rmid, TMNOFLAGS), XA_OK);

  /* The prepared branch survives this process; any process finds it again. */
  n = sw->xa_recover_entry(found, 8, rmid, TMSTARTRSCAN | TMENDRSCAN);
  printf("%-40s -> %d branch(es)\n", "xa_recover", n);
  for (i = 0; i < n; i++) {
    if (found[i].formatID == xid.formatID && memcmp(found[i].data, xid.data, 8) == 0) {
      ok &= check("xa_commit (two-phase)", sw->xa_commit_entry(&found[i], rmid, TMNOFLAGS), XA_OK);
    }
  }
  ok &= check("xa_commit again (already committed)", sw->xa_commit_entry(&xid, rmid, TMNOFLAGS),
              XAER_NOTA);

  res = PQexec(conn, "SELECT note FROM xatm_example WHERE id = 1");
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
    printf("row 1: %s\n", PQgetvalue(res, 0, 0));
  } else {
    ok = 0;
  }
  PQclear(res);
  PQclear(PQexec(conn, "DROP TABLE xatm_example"));
  ok &= check("xa_close", sw->xa_close_entry("", rmid, TMNOFLAGS), XA_OK);
  return ok ? 0 : 1;
}
