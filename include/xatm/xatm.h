/*
 * xatm.h - the xatm transaction manager's C API.
 *
 * xatm commits one global transaction atomically across several resource
 * managers (PostgreSQL, SQLite, or any RM with an X/Open xa_switch_t). Its
 * verbs mirror XA at the global level:
 *
 *     xatm *tm;  xatm_tx *tx;
 *     xatm_open("app.conf", &tm);
 *     xatm_start(tm, &tx);
 *     PGconn  *pg = xatm_pgconn(tx, "bank");     (joins the "bank" branch)
 *     sqlite3 *db = xatm_sqlite(tx, "ledger");   (joins the "ledger" branch)
 *     ... run SQL on pg and db ...
 *     xatm_commit(tx);                           (both phases)
 *     xatm_tx_free(tx);
 *     xatm_close(tm);
 *
 * Thread-safety: an xatm handle may be shared by any number of threads. An
 * xatm_tx belongs to one thread at a time; the RM handles returned for it
 * (PGconn, sqlite3) belong to the thread that asked for them.
 *
 * Ownership: objects returned through an `**out` argument belong to the
 * caller and are released with their `_free`/`_close`; pointers returned
 * directly are borrowed from their parent and live as long as it does.
 * Every `_free` and `_close` accepts NULL. An xatm_tx lives inside its xatm:
 * free every transaction before closing the handle (xatm_close refuses
 * otherwise).
 *
 * Errors: functions that can fail return an int: XATM_OK (0) or one of the
 * negative XATM_E* codes below. The text of the last failure is kept on the
 * handle (xatm_errmsg), valid until the next call on that handle.
 * No C++ exception ever leaves this API.
 */
#ifndef XATM_XATM_H
#define XATM_XATM_H

#include <stddef.h>
#include <stdint.h>

#include "xa.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define XATM_EXTERN
#elif defined(__GNUC__)
#define XATM_EXTERN __attribute__((visibility("default")))
#else
#define XATM_EXTERN
#endif

/* Opaque handles. */
typedef struct xatm xatm;               /* a transaction manager */
typedef struct xatm_tx xatm_tx;         /* one global transaction */
typedef struct xatm_config xatm_config; /* a configuration built in code */

/* libpq's and SQLite's handle types, without requiring their headers. */
struct pg_conn;
struct sqlite3;
struct st_mysql; /* MYSQL */

/* ----------------------------------------------------------------------
 * Return codes. XATM_OK is 0; failures are negative and distinct where a
 * caller must tell them apart.
 * -------------------------------------------------------------------- */
#define XATM_OK 0
#define XATM_ERROR -1        /* an unexpected internal error; see xatm_errmsg */
#define XATM_EINVAL -2       /* a bad argument, or a call out of sequence */
#define XATM_ECONFIG -3      /* the configuration is invalid; the message names the key */
#define XATM_ERM -4          /* a resource manager failed or cannot be reached */
#define XATM_ELOG -5         /* the decision log cannot be read or written (I/O error) */
#define XATM_ECORRUPT -6     /* the decision log is corrupt; the message gives file and offset */
#define XATM_EBUSY -7        /* the decision log is owned by another process */
#define XATM_EROLLEDBACK -8  /* the transaction was rolled back (a branch voted no or failed before the commit point) */
#define XATM_ETIMEDOUT -9    /* the transaction was rolled back because it outlived its timeout */
#define XATM_EHEURMIX -10    /* heuristic outcome: some branches committed, some rolled back */
#define XATM_EHEURHAZ -11    /* heuristic outcome: some branches may have been completed heuristically */
#define XATM_EHEURRB -12     /* heuristic outcome: the branches were rolled back although commit was decided */
#define XATM_ENOTFOUND -13   /* no such transaction or resource manager */
#define XATM_EPENDING -14    /* committed (the decision is durable), but some branches could not be
                                reached yet; recovery finishes them */
#define XATM_EUNKNOWN -15    /* the outcome cannot be known now (the decision log failed in a way that
                                may or may not have recorded the decision); recovery settles it */
#define XATM_EFENCED -16     /* refused, rolled back: the TM's session was ended (xatmd declared it dead, or
                                another node took this node over in the decision store) */
#define XATM_ENOMEM -17      /* out of memory */

/* ----------------------------------------------------------------------
 * Library
 * -------------------------------------------------------------------- */

/* The library version, e.g. "0.1.0". Static, never NULL. */
XATM_EXTERN const char *xatm_version(void);

/* Static English text for an XATM_* return code. Never NULL. */
XATM_EXTERN const char *xatm_errstr(int rc);

/* ----------------------------------------------------------------------
 * Opening a transaction manager
 * -------------------------------------------------------------------- */

/* Opens a TM from an INI configuration file ([tm] and [rm.NAME] sections),
 * opens every resource manager it names, takes ownership of the decision
 * log in [tm] log_dir and runs recovery.
 * *out is set even on failure (unless allocation failed), so that
 * xatm_errmsg(*out) can say why; close it with xatm_close either way.
 * Returns XATM_OK, XATM_ECONFIG, XATM_ERM, XATM_ELOG, XATM_ECORRUPT,
 * XATM_EBUSY, XATM_ENOMEM. */
XATM_EXTERN int xatm_open(const char *config_path, xatm **out);

/* Finishes phase two of every transaction this handle decided to commit,
 * closes the resource managers and releases the decision log.
 * Every xatm_tx of the handle must be freed first (xatm_tx_free): while one
 * is not, xatm_close refuses with XATM_EINVAL and the handle stays open.
 * Returns XATM_OK, XATM_EINVAL, or XATM_EPENDING if some branch could not be
 * finished (recovery will). Accepts NULL. */
XATM_EXTERN int xatm_close(xatm *tm);

/* The message of the last failure on this handle ("" if none). Borrowed:
 * valid until the next call on tm. Accepts NULL (returns a static text). */
XATM_EXTERN const char *xatm_errmsg(const xatm *tm);

/* Counters of a handle since it was opened. */
typedef struct xatm_stats {
  uint64_t begun;          /* transactions started */
  uint64_t committed;      /* transactions committed (XATM_OK or XATM_EPENDING) */
  uint64_t rolled_back;    /* transactions rolled back (by the application, a vote, a timeout) */
  uint64_t log_records;    /* records appended to this handle's decision log; the log_* counters
                              are 0 with [tm] server (xatmd's metrics have them) */
  uint64_t log_writes;     /* writes of the log, each one group of records (group commit) */
  uint64_t log_syncs;      /* fdatasyncs of the log: log_records / log_syncs decisions share one */
  uint64_t log_max_batch;  /* the most records in one write */
} xatm_stats;

/* Fills *out. Returns XATM_OK or XATM_EINVAL (NULL, or a handle that did not open). */
XATM_EXTERN int xatm_get_stats(xatm *tm, xatm_stats *out);

/* ----------------------------------------------------------------------
 * Configuration in code (programs without a config file)
 * -------------------------------------------------------------------- */

/* A new, empty configuration. Returns XATM_OK or XATM_ENOMEM. */
XATM_EXTERN int xatm_config_new(xatm_config **out);

/* Reads an INI file into a configuration, which may then be amended.
 * Returns XATM_OK, XATM_ECONFIG (message via xatm_config_errmsg), XATM_ENOMEM. */
XATM_EXTERN int xatm_config_load(const char *path, xatm_config **out);

/* Sets a [tm] key ("log_dir", "node_name", "timeout_s", "server", ...), or a
 * [server] key as "server.KEY" (e.g. "server.token_file").
 * Returns XATM_OK or XATM_ECONFIG for an unknown key or a bad value. */
XATM_EXTERN int xatm_config_set(xatm_config *cfg, const char *key, const char *value);

/* Adds a PostgreSQL resource manager named `name`; conninfo is a libpq
 * connection string. Returns XATM_OK or XATM_ECONFIG (duplicate name). */
XATM_EXTERN int xatm_config_add_pgsql(xatm_config *cfg, const char *name, const char *conninfo);

/* Adds a SQLite resource manager; xa_info is "path=FILE [key=value ...]"
 * as for xatm_sqlite_switch. Returns XATM_OK or XATM_ECONFIG. */
XATM_EXTERN int xatm_config_add_sqlite(xatm_config *cfg, const char *name, const char *xa_info);

/* Adds a MySQL/MariaDB resource manager; xa_info is space-separated
 * key=value pairs as for xatm_mysql_switch ("socket=/run/mysqld/mysqld.sock
 * user=app database=shop"). Returns XATM_OK or XATM_ECONFIG. */
XATM_EXTERN int xatm_config_add_mysql(xatm_config *cfg, const char *name, const char *xa_info);

/* Adds any resource manager that has an xa_switch_t. The switch must outlive
 * every xatm opened from this configuration. Returns XATM_OK or XATM_ECONFIG. */
XATM_EXTERN int xatm_config_add_switch(xatm_config *cfg, const char *name, struct xa_switch_t *sw,
                                       const char *xa_info);

/* The message of the last failure on cfg ("" if none). Borrowed. */
XATM_EXTERN const char *xatm_config_errmsg(const xatm_config *cfg);

/* Releases a configuration. Accepts NULL. */
XATM_EXTERN void xatm_config_free(xatm_config *cfg);

/* Like xatm_open, from a configuration built in code. cfg may be freed
 * afterwards. Same return codes as xatm_open. */
XATM_EXTERN int xatm_open_config(const xatm_config *cfg, xatm **out);

/* ----------------------------------------------------------------------
 * Global transactions
 * -------------------------------------------------------------------- */

/* Begins a new global transaction. Branches join lazily, when the program
 * first asks for an RM's handle. Returns XATM_OK, XATM_EINVAL, XATM_ELOG,
 * XATM_ENOMEM. */
XATM_EXTERN int xatm_start(xatm *tm, xatm_tx **out);

/* The PostgreSQL connection of resource manager `rm` inside tx, starting its
 * branch on first use. Borrowed: valid until the transaction ends. Do not run
 * BEGIN/COMMIT/ROLLBACK/PREPARE on it. NULL on error (see xatm_errmsg). */
XATM_EXTERN struct pg_conn *xatm_pgconn(xatm_tx *tx, const char *rm);

/* The SQLite handle of resource manager `rm` inside tx, starting its branch
 * on first use. Borrowed, as for xatm_pgconn. NULL on error. */
XATM_EXTERN struct sqlite3 *xatm_sqlite(xatm_tx *tx, const char *rm);

/* The MySQL/MariaDB connection (MYSQL *) of resource manager `rm` inside tx,
 * starting its branch on first use. Borrowed, as for xatm_pgconn; it may be
 * another connection in the next transaction. NULL on error. */
XATM_EXTERN struct st_mysql *xatm_mysql(xatm_tx *tx, const char *rm);

/* Starts (or returns) the branch of any configured RM without touching its
 * native handle, for RMs added with xatm_config_add_switch.
 * Returns XATM_OK, XATM_ENOTFOUND, XATM_ERM, XATM_EINVAL. */
XATM_EXTERN int xatm_join(xatm_tx *tx, const char *rm);

/* Phase one only: ends and prepares every branch. After XATM_OK every branch
 * is prepared (or was read-only); finish with xatm_commit or xatm_rollback.
 * Returns XATM_OK, XATM_EROLLEDBACK (a branch voted no: all were rolled back),
 * XATM_ETIMEDOUT, XATM_ERM, XATM_EINVAL. */
XATM_EXTERN int xatm_prepare(xatm_tx *tx);

/* Commits: both phases, or phase two after xatm_prepare.
 * Returns XATM_OK; XATM_EROLLEDBACK or XATM_ETIMEDOUT (nothing committed);
 * XATM_EPENDING (decided and durable; some branches are finished later);
 * XATM_EHEURMIX, XATM_EHEURHAZ, XATM_EHEURRB (heuristic outcomes, recorded
 * in the log); XATM_EUNKNOWN; XATM_EINVAL. */
XATM_EXTERN int xatm_commit(xatm_tx *tx);

/* Rolls back every branch. Returns XATM_OK, XATM_EHEURMIX, XATM_EHEURHAZ,
 * XATM_ERM (some branch is left to recovery), XATM_EINVAL. */
XATM_EXTERN int xatm_rollback(xatm_tx *tx);

/* Releases a transaction; an unfinished one is rolled back first.
 * Accepts NULL. */
XATM_EXTERN void xatm_tx_free(xatm_tx *tx);

/* The global XID of tx (formatID and gtrid; bqual_length 0).
 * Returns XATM_OK or XATM_EINVAL. */
XATM_EXTERN int xatm_tx_xid(const xatm_tx *tx, XID *out);

/* ----------------------------------------------------------------------
 * Recovery and administration
 * -------------------------------------------------------------------- */

/* What the decision log (or a last resource's decision row) says about an
 * in-doubt transaction. */
#define XATM_DECISION_NONE 0      /* no decision: presumed abort */
#define XATM_DECISION_COMMIT 1    /* a COMMIT record or a decision row: every branch must commit */
#define XATM_DECISION_HEURISTIC 2 /* a heuristic outcome was recorded */
#define XATM_DECISION_UNKNOWN 3   /* cannot be known now: a resource manager that may hold its
                                     decision row is unreachable, or busy with a transaction that
                                     may be committing it; neither commit nor roll back by hand */

/* One in-doubt branch. Strings are NUL-terminated. */
typedef struct xatm_indoubt {
  XID xid;              /* the branch XID as its RM reports it */
  char rm[64];          /* the resource manager's configured name */
  int decision;         /* XATM_DECISION_* */
  int ours;             /* 1 if the XID was made by this TM node */
  long long age_s;      /* seconds since prepare (or since the decision), -1 if unknown */
} xatm_indoubt;

/* Runs recovery now: commits what the log decided, rolls back this node's
 * undecided branches of dead incarnations. Returns XATM_OK, XATM_EPENDING
 * (some RM could not be reached), XATM_ELOG. */
XATM_EXTERN int xatm_recover(xatm *tm);

/* Lists in-doubt branches across the log and every RM, changing nothing.
 * *out is an array of *count entries, released with xatm_indoubt_free.
 * Returns XATM_OK, XATM_ERM (listed what could be reached; message names
 * the RM), XATM_ENOMEM. */
XATM_EXTERN int xatm_indoubt_list(xatm *tm, xatm_indoubt **out, size_t *count);

/* Releases a list from xatm_indoubt_list. Accepts NULL. */
XATM_EXTERN void xatm_indoubt_free(xatm_indoubt *list);

/* Resolves one global transaction by hand (a heuristic decision): commit
 * (commit != 0) or roll back every branch of the gtrid in xid. Recorded in
 * the log first, with who and why. Refused with XATM_EINVAL if it contradicts
 * a decision (a COMMIT record, a last resource's decision row, an earlier
 * heuristic decision) or if a rollback's decision cannot be known now.
 * Returns XATM_OK, XATM_ENOTFOUND, XATM_EINVAL, XATM_ERM, XATM_ELOG. */
XATM_EXTERN int xatm_resolve(xatm *tm, const XID *xid, int commit, const char *who, const char *why);

/* Clears a recorded heuristic outcome (and tells the RMs to forget the
 * branch). Returns XATM_OK, XATM_ENOTFOUND, XATM_ELOG. */
XATM_EXTERN int xatm_forget(xatm *tm, const XID *xid);

#ifdef __cplusplus
}
#endif

#endif /* XATM_XATM_H */
