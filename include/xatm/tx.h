/*
 * tx.h - the X/Open TX (transaction demarcation) interface of xatm, with the
 * standard's names, types, values and state tables (X/Open CAE
 * Specification C504), over xatm's C API.
 *
 *   tx_open();                         reads the configuration named by the
 *                                      environment variable XATM_CONFIG
 *   tx_begin();
 *   PGconn *pg = xatm_tx_pgconn("bank");
 *   ...
 *   tx_commit();                       TX_OK, TX_ROLLBACK, TX_MIXED, TX_HAZARD...
 *   tx_close();
 *
 * One transaction per thread, as the standard says: each thread opens
 * (tx_open), begins, commits and closes on its own; the process shares one
 * transaction manager, opened by the first tx_open and closed by the last
 * tx_close.
 *
 * xatm's own additions are prefixed xatm_: the RM handles of the calling
 * thread's current transaction, and why the last TX call failed.
 */
#ifndef XATM_TX_H
#define XATM_TX_H

#include "xa.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define XATM_TX_EXTERN __attribute__((visibility("default")))
#else
#define XATM_TX_EXTERN
#endif

/* commit return values */
typedef long COMMIT_RETURN;
#define TX_COMMIT_COMPLETED 0       /* tx_commit returns once every branch is committed */
#define TX_COMMIT_DECISION_LOGGED 1 /* tx_commit returns once the decision is durable */

/* transaction control values */
typedef long TRANSACTION_CONTROL;
#define TX_UNCHAINED 0
#define TX_CHAINED 1 /* tx_commit and tx_rollback begin the next transaction */

/* type of transaction timeouts: seconds, 0 for none */
typedef long TRANSACTION_TIMEOUT;

/* transaction state values */
typedef long TRANSACTION_STATE;
#define TX_ACTIVE 0
#define TX_TIMEOUT_ROLLBACK_ONLY 1
#define TX_ROLLBACK_ONLY 2

/* structure populated by tx_info() */
struct tx_info_t {
  XID xid;
  COMMIT_RETURN when_return;
  TRANSACTION_CONTROL transaction_control;
  TRANSACTION_TIMEOUT transaction_timeout;
  TRANSACTION_STATE transaction_state;
};
typedef struct tx_info_t TXINFO;

/* tx_*() return codes */
#define TX_NOT_SUPPORTED 1   /* option not supported */
#define TX_OK 0              /* normal execution */
#define TX_OUTSIDE (-1)      /* the application is in an RM local transaction */
#define TX_ROLLBACK (-2)     /* the transaction was rolled back */
#define TX_MIXED (-3)        /* the transaction was partially committed and partially rolled back */
#define TX_HAZARD (-4)       /* the transaction may have been partially committed and partially rolled back */
#define TX_PROTOCOL_ERROR (-5) /* routine invoked in an improper context */
#define TX_ERROR (-6)        /* transient error */
#define TX_FAIL (-7)         /* fatal error */
#define TX_EINVAL (-8)       /* invalid arguments were given */
#define TX_COMMITTED (-9)    /* the transaction was heuristically committed */
#define TX_NO_BEGIN (-100)   /* transaction committed plus new transaction could not be started */
#define TX_ROLLBACK_NO_BEGIN (TX_ROLLBACK + TX_NO_BEGIN)
#define TX_MIXED_NO_BEGIN (TX_MIXED + TX_NO_BEGIN)
#define TX_HAZARD_NO_BEGIN (TX_HAZARD + TX_NO_BEGIN)
#define TX_COMMITTED_NO_BEGIN (TX_COMMITTED + TX_NO_BEGIN)

XATM_TX_EXTERN int tx_begin(void);
XATM_TX_EXTERN int tx_close(void);
XATM_TX_EXTERN int tx_commit(void);
/* 1 if the caller is in a transaction, 0 if not (info filled in either
 * case), or a negative TX code. */
XATM_TX_EXTERN int tx_info(TXINFO *info);
XATM_TX_EXTERN int tx_open(void);
XATM_TX_EXTERN int tx_rollback(void);
XATM_TX_EXTERN int tx_set_commit_return(COMMIT_RETURN when_return);
XATM_TX_EXTERN int tx_set_transaction_control(TRANSACTION_CONTROL control);
XATM_TX_EXTERN int tx_set_transaction_timeout(TRANSACTION_TIMEOUT timeout);

/* The handles of the calling thread's current transaction for resource
 * manager `rm` (starting its branch on first use); NULL outside a
 * transaction, for an RM that is not configured or not of that type, or if
 * the branch cannot start (xatm_tx_errmsg says why). Borrowed: valid until
 * the transaction ends. */
struct pg_conn;
struct sqlite3;
struct st_mysql;
XATM_TX_EXTERN struct pg_conn *xatm_tx_pgconn(const char *rm);
XATM_TX_EXTERN struct sqlite3 *xatm_tx_sqlite(const char *rm);
XATM_TX_EXTERN struct st_mysql *xatm_tx_mysql(const char *rm);

/* Why the calling thread's last TX call failed ("" if it did not). Borrowed:
 * valid until its next TX call. */
XATM_TX_EXTERN const char *xatm_tx_errmsg(void);

#ifdef __cplusplus
}
#endif

#endif /* XATM_TX_H */
