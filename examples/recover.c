/* recover.c - lists in-doubt transactions and resolves them.
 *
 *   recover CONFIG                     run recovery, then list what is left
 *   recover CONFIG commit GTRID        commit every branch of GTRID by hand
 *   recover CONFIG rollback GTRID      roll every branch of GTRID back by hand
 *
 * GTRID is the global transaction id in hex, as the listing shows it. A
 * decision by hand is logged with who and why; the xatm admin CLI does the
 * same with more detail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xatm/xatm.h>

static void hex(const char *p, long n, char *out) {
  long i;
  for (i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", (unsigned char)p[i]);
  out[2 * n] = '\0';
}

static int unhex(const char *s, XID *xid) {
  size_t n = strlen(s), i;
  memset(xid, 0, sizeof *xid);
  if (n == 0 || n % 2 || n / 2 > MAXGTRIDSIZE) return 0;
  for (i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) return 0;
    xid->data[i] = (char)v;
  }
  xid->formatID = 0;
  xid->gtrid_length = (long)(n / 2);
  return 1;
}

int main(int argc, char **argv) {
  xatm *tm = NULL;
  xatm_indoubt *list = NULL;
  size_t n = 0, i;
  int rc;
  char g[2 * MAXGTRIDSIZE + 1];

  if (argc != 2 && argc != 4) {
    fprintf(stderr, "usage: %s CONFIG [commit|rollback GTRID]\n", argv[0]);
    return 2;
  }
  rc = xatm_open(argv[1], &tm);
  if (rc != XATM_OK) {
    fprintf(stderr, "xatm_open: %s\n", xatm_errmsg(tm));
    xatm_close(tm);
    return 1;
  }
  if (argc == 4) {
    XID xid;
    const char *who = getenv("USER");
    if (!unhex(argv[3], &xid) || (strcmp(argv[2], "commit") && strcmp(argv[2], "rollback"))) {
      fprintf(stderr, "usage: %s CONFIG [commit|rollback GTRID]\n", argv[0]);
      xatm_close(tm);
      return 2;
    }
    rc = xatm_resolve(tm, &xid, strcmp(argv[2], "commit") == 0, who ? who : "recover.c",
                      "resolved with examples/recover");
    printf("%s %s: %s%s%s\n", argv[2], argv[3], xatm_errstr(rc), rc ? ": " : "", rc ? xatm_errmsg(tm) : "");
  } else {
    rc = xatm_recover(tm);
    printf("recovery: %s%s%s\n", xatm_errstr(rc), rc ? ": " : "", rc ? xatm_errmsg(tm) : "");
  }
  if (xatm_indoubt_list(tm, &list, &n) != XATM_OK) fprintf(stderr, "listing: %s\n", xatm_errmsg(tm));
  printf("%zu in-doubt branch(es)\n", n);
  for (i = 0; i < n; i++) {
    hex(list[i].xid.data, list[i].xid.gtrid_length, g);
    printf("  %-8s %s  %s%s\n", list[i].rm, g,
           list[i].decision == XATM_DECISION_COMMIT      ? "decided: commit"
           : list[i].decision == XATM_DECISION_HEURISTIC ? "heuristic outcome recorded"
           : list[i].decision == XATM_DECISION_UNKNOWN   ? "decision unknown for now (left in doubt)"
                                                         : "no decision (presumed abort)",
           list[i].ours ? "" : "  (another TM's)");
  }
  xatm_indoubt_free(list);
  xatm_close(tm);
  return 0;
}
