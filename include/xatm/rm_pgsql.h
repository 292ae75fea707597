/*
 * rm_pgsql.h - the PostgreSQL resource manager: an X/Open XA switch over libpq.
 *
 * xa_info is a libpq connection string ("host=/run/pg dbname=bank").
 * A branch is a session transaction: BEGIN ... PREPARE TRANSACTION 'gid' ...
 * COMMIT PREPARED / ROLLBACK PREPARED. The gid encodes the full XID in the
 * form formatID_base64(gtrid)_base64(bqual), as pgjdbc does, so Java and C
 * branches are read alike.
 *
 * Thread-safety: XA's thread-of-control model. xa_open opens one connection
 * per (thread, rmid); every other call acts on the calling thread's
 * connection for that rmid.
 */
#ifndef XATM_RM_PGSQL_H
#define XATM_RM_PGSQL_H

#include <libpq-fe.h>

#include "xa.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define XATM_RM_PGSQL_EXTERN __attribute__((visibility("default")))
#else
#define XATM_RM_PGSQL_EXTERN
#endif

/* The switch. Its name is "xatm_pgsql". */
XATM_RM_PGSQL_EXTERN extern struct xa_switch_t xatm_pgsql_switch;

/* The calling thread's connection for rmid, or NULL if xa_open was not
 * called on this thread for rmid. Borrowed: valid until xa_close. */
XATM_RM_PGSQL_EXTERN PGconn *xatm_pgsql_conn(int rmid);

/* The message of the last failed switch call on this thread for rmid, with
 * libpq's text where it had one; "" if none. Never contains a password.
 * Borrowed: valid until the next switch call on this thread for rmid. */
XATM_RM_PGSQL_EXTERN const char *xatm_pgsql_errmsg(int rmid);

#ifdef __cplusplus
}
#endif

#endif /* XATM_RM_PGSQL_H */
