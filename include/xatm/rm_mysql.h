/*
 * rm_mysql.h - the MySQL/MariaDB resource manager: an X/Open XA switch over
 * MariaDB Connector/C (MariaDB 10.5 and later, MySQL 8).
 *
 * xa_info is space-separated key=value pairs: host, port, socket, user,
 * password, database (a value may be single-quoted: password='a b'), and
 * durability=warn to accept a server that would lose a commit at a crash
 * (only a warning then). A branch is XA START ... XA END, XA PREPARE ...
 * XA COMMIT / XA ROLLBACK, with the XID passed as binary literals, so any
 * gtrid, bqual and formatID round-trip byte for byte.
 *
 * The server ties a prepared branch to the session that prepared it: the
 * RM finishes it on that session when the same thread commits it, and
 * otherwise ends the session at the thread's next xa_start, so the
 * connection for the branch may change: ask xatm_mysql_conn again for each
 * branch. Use the connection inside branches only: the RM reads the
 * session's counters to tell a branch that wrote nothing and one whose
 * statement failed, and what runs between branches counts toward the next
 * one (at worst it prepares instead of voting read-only, or votes no).
 *
 * Thread-safety: XA's thread-of-control model. xa_open opens one connection
 * per (thread, rmid); every other call acts on the calling thread's
 * connection for that rmid.
 */
#ifndef XATM_RM_MYSQL_H
#define XATM_RM_MYSQL_H

#include <mysql.h>

#include "xa.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define XATM_RM_MYSQL_EXTERN __attribute__((visibility("default")))
#else
#define XATM_RM_MYSQL_EXTERN
#endif

/* The switch. Its name is "xatm_mysql". */
XATM_RM_MYSQL_EXTERN extern struct xa_switch_t xatm_mysql_switch;

/* The calling thread's connection for rmid's current branch, or NULL if
 * xa_open was not called on this thread for rmid. Borrowed: valid until the
 * next xa_start, xa_close or a lost connection; ask again for each branch. */
XATM_RM_MYSQL_EXTERN MYSQL *xatm_mysql_conn(int rmid);

/* The message of the last failed switch call on this thread for rmid; "" if
 * none. Never contains a password. Borrowed: valid until the next switch
 * call on this thread for rmid. */
XATM_RM_MYSQL_EXTERN const char *xatm_mysql_errmsg(int rmid);

#ifdef __cplusplus
}
#endif

#endif /* XATM_RM_MYSQL_H */
