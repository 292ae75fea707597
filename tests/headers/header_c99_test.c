/* The public headers compile as strict C99 (-std=c99 -pedantic -Werror) and
 * their constants carry the XA specification's values. */
#include <stdio.h>
#include <string.h>

#include "xatm/rm_mysql.h"
#include "xatm/rm_pgsql.h"
#include "xatm/rm_sqlite.h"
#include "xatm/tx.h"
#include "xatm/xa.h"
#include "xatm/xatm.h"

static int failures;
#define CHECK(cond)                                          \
  do {                                                       \
    if (!(cond)) {                                           \
      fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                            \
    }                                                        \
  } while (0)

int main(void) {
  CHECK(TX_ROLLBACK_NO_BEGIN == -102);
  CHECK(TX_COMMIT_DECISION_LOGGED == 1 && TX_CHAINED == 1 && TX_TIMEOUT_ROLLBACK_ONLY == 1);
  XID x;
  struct xa_switch_t sw;
  memset(&x, 0, sizeof x);
  memset(&sw, 0, sizeof sw);
  CHECK(sizeof x.data == 128 && XIDDATASIZE == 128);
  CHECK(MAXGTRIDSIZE == 64 && MAXBQUALSIZE == 64 && RMNAMESZ == 32 && MAXINFOSIZE == 256);
  CHECK(TMNOFLAGS == 0 && TMREGISTER == 0x1L && TMNOMIGRATE == 0x2L && TMUSEASYNC == 0x4L);
  CHECK(TMASYNC == 0x80000000L && TMONEPHASE == 0x40000000L && TMFAIL == 0x20000000L);
  CHECK(TMNOWAIT == 0x10000000L && TMRESUME == 0x08000000L && TMSUCCESS == 0x04000000L);
  CHECK(TMSUSPEND == 0x02000000L && TMSTARTRSCAN == 0x01000000L && TMENDRSCAN == 0x00800000L);
  CHECK(TMMULTIPLE == 0x00400000L && TMJOIN == 0x00200000L && TMMIGRATE == 0x00100000L);
  CHECK(XA_RBBASE == 100 && XA_RBROLLBACK == 100 && XA_RBCOMMFAIL == 101 && XA_RBDEADLOCK == 102);
  CHECK(XA_RBINTEGRITY == 103 && XA_RBOTHER == 104 && XA_RBPROTO == 105 && XA_RBTIMEOUT == 106);
  CHECK(XA_RBTRANSIENT == 107 && XA_RBEND == 107);
  CHECK(XA_NOMIGRATE == 9 && XA_HEURHAZ == 8 && XA_HEURCOM == 7 && XA_HEURRB == 6);
  CHECK(XA_HEURMIX == 5 && XA_RETRY == 4 && XA_RDONLY == 3 && XA_OK == 0);
  CHECK(XAER_ASYNC == -2 && XAER_RMERR == -3 && XAER_NOTA == -4 && XAER_INVAL == -5);
  CHECK(XAER_PROTO == -6 && XAER_RMFAIL == -7 && XAER_DUPID == -8 && XAER_OUTSIDE == -9);
  CHECK(TM_JOIN == 2 && TM_RESUME == 1 && TM_OK == 0 && TMER_TMERR == -1 && TMER_INVAL == -2 &&
        TMER_PROTO == -3);
  CHECK(XATM_OK == 0);
  CHECK(strlen(xatm_version()) > 0);
  CHECK(strcmp(xatm_errstr(XATM_EROLLEDBACK), "transaction rolled back") == 0);
  if (failures == 0) printf("public headers: ok\n");
  return failures == 0 ? 0 : 1;
}
