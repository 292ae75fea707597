/*
 * rm_sqlite.h - the SQLite resource manager, with a durable prepared state.
 *
 * xa_info is "path=FILE" optionally followed by space-separated key=value
 * options, e.g. "path=/var/lib/app/ledger.db busy_timeout_ms=5000":
 *   busy_timeout_ms=N   how long to wait for another writer (default 5000)
 *   readonly=1          only xa_recover works; nothing is written, not even at
 *                       xa_open (for tools that look)
 * SQLite has no PREPARE TRANSACTION; at xa_prepare this RM writes the
 * branch's changeset durably to a sidecar next to FILE and keeps the write
 * transaction open, so a prepared branch survives any crash.
 *
 * Thread-safety: XA's thread-of-control model, as for xatm_pgsql_switch:
 * one connection per (thread, rmid).
 */
#ifndef XATM_RM_SQLITE_H
#define XATM_RM_SQLITE_H

#include <sqlite3.h>

#include "xa.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define XATM_RM_SQLITE_EXTERN __attribute__((visibility("default")))
#else
#define XATM_RM_SQLITE_EXTERN
#endif

/* The switch. Its name is "xatm_sqlite". */
XATM_RM_SQLITE_EXTERN extern struct xa_switch_t xatm_sqlite_switch;

/* The calling thread's database handle for rmid, or NULL if xa_open was not
 * called on this thread for rmid. Borrowed: valid until xa_close. */
XATM_RM_SQLITE_EXTERN sqlite3 *xatm_sqlite_db(int rmid);

/* The message of the last failed switch call on this thread for rmid; after
 * a statement on the handle fails with SQLITE_AUTH inside a branch, the
 * reason it was refused. "" if none. Borrowed: valid until the next switch
 * call on this thread for rmid. */
XATM_RM_SQLITE_EXTERN const char *xatm_sqlite_errmsg(int rmid);

#ifdef __cplusplus
}
#endif

#endif /* XATM_RM_SQLITE_H */
