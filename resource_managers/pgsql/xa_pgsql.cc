// The PostgreSQL resource manager: an X/Open XA switch over libpq.
//
// A branch is a session transaction on the calling thread's connection:
//
//   xa_start     BEGIN (and a check that no prepared transaction has the gid)
//   ...          the application's statements, on xatm_pgsql_conn(rmid)
//   xa_end       the association ends; a failed statement or TMFAIL rolls back.
//                With TMSUCCESS the query for the transaction id that
//                xa_prepare needs is sent, not waited for: its round trip
//                overlaps the TM's work on other branches until the next call
//   xa_prepare   read-only? COMMIT, XA_RDONLY. Else PREPARE TRANSACTION 'gid',
//                which succeeded only if the command tag says so. With TMASYNC
//                the PREPARE is sent and a handle returned; xa_complete reads
//                its answer and gives the vote (so that a TM's prepares of
//                several databases wait for their WAL flushes together)
//   xa_commit    COMMIT PREPARED 'gid' (or COMMIT, with TMONEPHASE); TMASYNC
//                sends COMMIT PREPARED and returns a handle, as xa_prepare does
//   xa_rollback  ROLLBACK, or ROLLBACK PREPARED 'gid'
//   xa_recover   the decodable gids of pg_prepared_xacts in this database
//
// Branch states of a connection (XA's S0..S4), and the association:
//   kNone          S0: no branch on this connection
//   kActive        S1, associated with the thread
//   kSuspended     S1, association suspended (TMSUSPEND)
//   kIdle          S2: ended with TMSUCCESS, to be prepared or committed in one phase
//   kRollbackOnly  S4: ended with TMFAIL, a failed statement or a lost connection;
//                  PostgreSQL has already rolled the work back
// Prepared branches (S3) live in PostgreSQL, not on a connection: any
// connection to the same database commits or rolls them back by gid.
//
// Unknown outcomes. A connection lost during PREPARE TRANSACTION or a
// one-phase COMMIT leaves the outcome unknown to the client. The RM then
// reconnects, makes sure the old backend is gone (it could still be finishing
// the PREPARE: it is terminated and waited for), and only then looks: the gid
// in pg_prepared_xacts means prepared; otherwise the transaction id recorded
// before PREPARE says committed or aborted. It never guesses.
#include <libpq-events.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/branch.h"
#include "common/xid_util.h"
#include "pgsql/gid.h"
#include "pgsql/pgsql_rm.h"
#include "util/crash_point.h"
#include "xatm/rm_pgsql.h"

namespace xtm::pgsql {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int> g_resolve_timeout_ms{10000};

using rm::BranchState;

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// One connection of one thread to one RM (rmid).
struct RmConn {
  int rmid = 0;
  std::string conninfo;
  PGconn* pg = nullptr;
  // pg was lost (libpq may still say CONNECTION_OK: PITFALLS 10).
  bool broken = false;
  // Identity of the backend serving pg, to find it again after losing it.
  std::string backend_pid;
  std::string backend_start;
  bool modern = true;  // server >= 13: pg_current_xact_id_if_assigned, pg_xact_status

  BranchState state = BranchState::kNone;
  XID xid{};
  int rb_code = XA_RBROLLBACK;  // what a rollback-only branch reports

  // A second connection, opened only to finish a prepared branch while pg is
  // inside a transaction block (PostgreSQL refuses COMMIT PREPARED there).
  PGconn* aux = nullptr;

  // The transaction-id query sent by xa_end(TMSUCCESS), and its answer once
  // the next call has read it (see TakeXidQuery).
  bool xid_query_sent = false;
  Result xid_result;
  // The branch's transaction id, read with statements the TM ran in the
  // branch (ExecInBranch): a one-phase commit needs no query of its own.
  Result branch_xid;
  // A result on pg since the branch began reported rows written (INSERT,
  // UPDATE, DELETE or MERGE of at least one row): its transaction has an id,
  // so the vote needs no query to tell it from a read-only one. Set by
  // NoteWrites, a libpq event procedure that sees the application's results.
  bool wrote = false;
  // Every xid this connection starts is new (TrustFreshXids): xa_start does
  // not ask the server whether a prepared transaction has it.
  bool fresh_xids = false;

  // An xa_prepare or xa_commit with TMASYNC whose answer xa_complete has not
  // read yet.
  struct AsyncOp {
    bool active = false;
    bool commit = false;       // COMMIT PREPARED (else PREPARE TRANSACTION)
    int handle = 0;
    bool sent = false;         // the statement was sent; false: `code` is the answer already
    bool send_failed = false;  // ... or could not be: the connection is gone
    int code = XA_OK;
    XID xid{};
    PGconn* conn = nullptr;          // where it was sent
    std::string pid, start, pg_xid;  // what a lost PREPARE is resolved with
  } async;
  int async_seq = 0;

  rm::RecoverCursor scan;

  // The gid of gid_xid (see GidOf): a branch's PREPARE TRANSACTION and COMMIT
  // PREPARED name the same one. (All zero at first: equal to no valid XID.)
  XID gid_xid{};
  std::string gid;

  ~RmConn() {
    if (pg) PQfinish(pg);
    if (aux) PQfinish(aux);
  }
};

thread_local std::map<int, std::unique_ptr<RmConn>> tls_conns;
thread_local std::map<int, std::string> tls_errors;

int Fail(int rmid, int code, std::string msg) {
  tls_errors[rmid] = std::move(msg);
  return code;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string ErrorText(PGconn* c, const PGresult* r) {
  std::string m = r ? PQresultErrorMessage(r) : "";
  if (m.empty() && c) m = PQerrorMessage(c);
  if (m.empty()) m = "no result from the server";
  return Trim(m);
}

const char* SqlState(const PGresult* r) {
  const char* s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  return s ? s : "";
}

// Whether a failed command lost the connection (the server or the network
// went away), as opposed to an error the server reported.
bool ConnectionLost(PGconn* c, const PGresult* r) {
  if (PQstatus(c) == CONNECTION_BAD) return true;
  if (r == nullptr) return true;
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_FATAL_ERROR && st != PGRES_NONFATAL_ERROR) return false;
  std::string code = SqlState(r);
  // libpq reports "server closed the connection unexpectedly" without a
  // SQLSTATE while PQstatus may still say CONNECTION_OK.
  if (code.empty()) return true;
  return code.compare(0, 2, "08") == 0 || code == "57P01" || code == "57P02" || code == "57P03";
}

// ConnectionLost, remembering it for the RM's own connections.
bool Lost(RmConn* rc, PGconn* c, const PGresult* r) {
  if (!ConnectionLost(c, r)) return false;
  if (c == rc->pg) rc->broken = true;
  if (c == rc->aux) {
    PQfinish(rc->aux);
    rc->aux = nullptr;
  }
  return true;
}

bool Dead(const RmConn* rc) { return rc->broken || PQstatus(rc->pg) == CONNECTION_BAD; }

// Whether a command tag says rows were written: "INSERT 0 n", "UPDATE n",
// "DELETE n", "MERGE n" with n > 0. Anything else (a function that writes
// inside a SELECT, COPY, DDL) is not taken for a write: the vote then asks
// the server, as it always may.
bool TagWroteRows(const char* tag) {
  const char* count = nullptr;
  if (std::strncmp(tag, "INSERT ", 7) == 0) {
    count = std::strchr(tag + 7, ' ');
    if (count) ++count;
  } else if (std::strncmp(tag, "UPDATE ", 7) == 0 || std::strncmp(tag, "DELETE ", 7) == 0) {
    count = tag + 7;
  } else if (std::strncmp(tag, "MERGE ", 6) == 0) {
    count = tag + 6;
  }
  if (count == nullptr || *count < '0' || *count > '9') return false;
  for (const char* p = count; *p; ++p) {
    if (*p < '0' || *p > '9') return false;
    if (*p != '0') return true;
  }
  return false;
}

// libpq event procedure on each branch connection (pass-through: its RmConn).
int NoteWrites(PGEventId id, void* info, void* pass) {
  if (id == PGEVT_RESULTCREATE) {
    const PGresult* r = static_cast<PGEventResultCreate*>(info)->result;
    if (PQresultStatus(r) == PGRES_COMMAND_OK && TagWroteRows(PQcmdStatus(const_cast<PGresult*>(r)))) {
      static_cast<RmConn*>(pass)->wrote = true;
    }
  }
  return 1;  // never fails a result or a connection
}

const char* XidSql(const RmConn* rc) {
  return rc->modern ? "SELECT pg_current_xact_id_if_assigned()" : "SELECT txid_current_if_assigned()";
}

// Reads the answer to the query xa_end sent, so that the connection is free
// again; keeps it in rc->xid_result for the call that needs it (xa_prepare,
// one-phase xa_commit); any other call just drops it. Every call but xa_open
// starts here. The answer is missing if the application ran a statement on
// the connection after xa_end (libpq then discards pending results): the
// caller asks again.
void TakeXidQuery(RmConn* rc) {
  rc->xid_result.reset();
  if (!rc->xid_query_sent) return;
  rc->xid_query_sent = false;
  while (PGresult* r = PQgetResult(rc->pg)) {
    if (!rc->xid_result) {
      rc->xid_result.reset(r);
    } else {
      PQclear(r);
    }
  }
}

// Runs one or more statements as one simple query; returns every result.
// False if no result came back at all (the connection is gone).
std::vector<Result> ExecAll(PGconn* c, const std::string& sql, const char* crash_point_after_send = nullptr) {
  std::vector<Result> out;
  if (!PQsendQuery(c, sql.c_str())) return out;
  if (crash_point_after_send) XATM_CRASH_POINT(crash_point_after_send);
  while (PGresult* r = PQgetResult(c)) out.emplace_back(r);
  return out;
}

Result Exec(PGconn* c, const std::string& sql) { return Result(PQexec(c, sql.c_str())); }

bool Ok(const Result& r) {
  return r && (PQresultStatus(r.get()) == PGRES_COMMAND_OK ||
               PQresultStatus(r.get()) == PGRES_TUPLES_OK);
}

std::string Literal(PGconn* c, const std::string& s) {
  char* lit = PQescapeLiteral(c, s.data(), s.size());
  if (lit == nullptr) return "''";  // only on out-of-memory; the statement then fails
  std::string out(lit);
  PQfreemem(lit);
  return out;
}

// A gid is digits, '-', '_' and base64 ('+', '/', '='): a string literal
// needs no escaping. head, then the gid of xid quoted, then tail.
std::string WithGid(std::string_view head, std::string_view gid, std::string_view tail = {}) {
  std::string out;
  out.reserve(head.size() + gid.size() + 2 + tail.size());
  out += head;
  out += '\'';
  out += gid;
  out += '\'';
  out += tail;
  return out;
}

std::string GidLiteral(const XID& xid) { return WithGid({}, XidToGid(xid)); }

// The gid of xid, built once per branch of rc.
const std::string& GidOf(RmConn* rc, const XID& xid) {
  if (!rm::XidEqual(rc->gid_xid, xid)) {
    rc->gid = XidToGid(xid);
    rc->gid_xid = xid;
  }
  return rc->gid;
}

RmConn* Find(int rmid) {
  auto it = tls_conns.find(rmid);
  return it == tls_conns.end() ? nullptr : it->second.get();
}


// xa_start's check that no prepared transaction has the branch's gid, as a
// statement prepared on every connection: planning the query each time cost
// about as much as the BEGIN it is sent with.
constexpr const char* kGidCheck = "xatm_gid_prepared";

std::string PrepareGidCheckSql() {
  return std::string("PREPARE ") + kGidCheck +
         "(text) AS SELECT count(*) FROM pg_catalog.pg_prepared_xact() WHERE gid = $1";
}

// Connects (preparing the gid check) and reads what the RM needs to know
// about the server.
int Connect(RmConn* rc, PGconn** out, bool main) {
  PGconn* c = PQconnectdb(rc->conninfo.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string m = Trim(PQerrorMessage(c));
    PQfinish(c);
    return Fail(rc->rmid, main ? XAER_RMERR : XAER_RMFAIL,
                "cannot connect to PostgreSQL (" + RedactConninfo(rc->conninfo) + "): " + m);
  }
  // PQexec answers with the last statement's result: the settings.
  Result r = Exec(c, PrepareGidCheckSql() +
                         "; SELECT current_setting('max_prepared_transactions')::int, pg_backend_pid(), "
                         "(SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()), "
                         "current_setting('server_version_num')::int");
  if (!Ok(r) || PQntuples(r.get()) != 1) {
    std::string m = ErrorText(c, r.get());
    PQfinish(c);
    return Fail(rc->rmid, XAER_RMERR, "cannot read the server settings: " + m);
  }
  if (std::atoi(PQgetvalue(r.get(), 0, 0)) <= 0) {
    PQfinish(c);
    return Fail(rc->rmid, XAER_RMERR,
                "PostgreSQL (" + RedactConninfo(rc->conninfo) +
                    ") has max_prepared_transactions = 0, so it cannot take part in two-phase "
                    "commit: set max_prepared_transactions (at least the number of concurrent "
                    "transactions, e.g. equal to max_connections) in postgresql.conf and restart "
                    "the server");
  }
  if (main) {
    rc->backend_pid = PQgetvalue(r.get(), 0, 1);
    rc->backend_start = PQgetvalue(r.get(), 0, 2);
    rc->modern = std::atoi(PQgetvalue(r.get(), 0, 3)) >= 130000;
  }
  *out = c;
  return XA_OK;
}

// Replaces a lost main connection (keeping the branch state as it is).
int Reconnect(RmConn* rc) {
  PGconn* c = nullptr;
  int rc2 = Connect(rc, &c, /*main=*/false);
  if (rc2 != XA_OK) return rc2;
  PQfinish(rc->pg);
  rc->pg = c;
  PQregisterEventProc(rc->pg, NoteWrites, "xatm", rc);
  rc->broken = false;
  Result r = Exec(c, "SELECT pg_backend_pid(), (SELECT backend_start FROM pg_stat_activity "
                     "WHERE pid = pg_backend_pid())");
  if (Ok(r) && PQntuples(r.get()) == 1) {
    rc->backend_pid = PQgetvalue(r.get(), 0, 0);
    rc->backend_start = PQgetvalue(r.get(), 0, 1);
  }
  return XA_OK;
}

// Retries Reconnect until it works or the resolve timeout passes.
int ReconnectPatiently(RmConn* rc) {
  auto deadline = Clock::now() + std::chrono::milliseconds(g_resolve_timeout_ms.load());
  for (;;) {
    int r = Reconnect(rc);
    if (r == XA_OK) return r;
    if (Clock::now() >= deadline) return XAER_RMFAIL;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// Makes sure the backend identified by (pid, start) no longer runs: it may be
// finishing a PREPARE or COMMIT the client will never hear about.
// REQUIRES: rc->pg is a fresh connection. Returns XA_OK once it is gone.
int EnsureBackendGone(RmConn* rc, const std::string& pid, const std::string& start) {
  if (pid.empty()) return XA_OK;
  const std::string match = "pid = " + pid + " AND backend_start = " + Literal(rc->pg, start) +
                            "::timestamptz";
  auto deadline = Clock::now() + std::chrono::milliseconds(g_resolve_timeout_ms.load());
  bool terminated = false;
  for (;;) {
    Result r = Exec(rc->pg, "SELECT count(*) FROM pg_stat_activity WHERE " + match);
    if (!Ok(r)) return Fail(rc->rmid, XAER_RMFAIL, "cannot look for the old backend: " + ErrorText(rc->pg, r.get()));
    if (std::atoi(PQgetvalue(r.get(), 0, 0)) == 0) return XA_OK;
    if (!terminated) {
      Result t = Exec(rc->pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE " + match);
      terminated = Ok(t);
    }
    if (Clock::now() >= deadline) {
      return Fail(rc->rmid, XAER_RMFAIL,
                  "the backend (pid " + pid + ") of the lost connection is still running and could "
                  "not be terminated; its outcome is unknown until it ends");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// The query that counts the prepared transactions named like xid, in any
// database of the cluster (gids are unique cluster-wide). It reads the
// function under the pg_prepared_xacts view: the view joins pg_authid and
// pg_database, which made planning and running it cost three times a BEGIN.
std::string CountPreparedSql(const XID& xid) {
  return "SELECT count(*) FROM pg_catalog.pg_prepared_xact() WHERE gid = " + GidLiteral(xid);
}

// Whether gid is prepared (in any database of the cluster). -1 on error.
int GidPrepared(PGconn* c, const XID& xid) {
  Result r = Exec(c, CountPreparedSql(xid));
  if (!Ok(r)) return -1;
  return std::atoi(PQgetvalue(r.get(), 0, 0)) > 0 ? 1 : 0;
}

// Maps the error of a statement that ended the transaction to an XA_RB* code.
int RollbackCode(const PGresult* r) {
  std::string code = SqlState(r);
  if (code == "40P01") return XA_RBDEADLOCK;
  if (code == "40001") return XA_RBTRANSIENT;
  if (code == "57014") return XA_RBTIMEOUT;  // statement or lock timeout
  if (code.compare(0, 2, "23") == 0) return XA_RBINTEGRITY;
  return XA_RBOTHER;
}

// Drops the branch of rc, rolling back its transaction if one is open.
void ForgetBranch(RmConn* rc) {
  if (!Dead(rc) && PQtransactionStatus(rc->pg) != PQTRANS_IDLE) {
    Result r = Exec(rc->pg, "ROLLBACK");
  }
  rc->state = BranchState::kNone;
  std::memset(&rc->xid, 0, sizeof rc->xid);
  rc->branch_xid.reset();
}

// The branch becomes rollback-only: its work is rolled back at once (so no
// lock outlives it), and later calls report code.
int MarkRollbackOnly(RmConn* rc, int code, std::string why) {
  if (!Dead(rc) && PQtransactionStatus(rc->pg) != PQTRANS_IDLE) {
    Result r = Exec(rc->pg, "ROLLBACK");
  }
  rc->state = BranchState::kRollbackOnly;
  rc->rb_code = code;
  return Fail(rc->rmid, code, std::move(why));
}

// Common checks of every call but xa_open; sets *rc.
int Enter(int rmid, long flags, long allowed, RmConn** rc) {
  if ((flags & TMASYNC) && !(allowed & TMASYNC)) {
    return Fail(rmid, XAER_ASYNC, "asynchronous XA calls are not supported but for xa_prepare and xa_commit");
  }
  if (flags & ~allowed) return Fail(rmid, XAER_INVAL, "unsupported flags for this call");
  *rc = Find(rmid);
  if (*rc == nullptr) {
    return Fail(rmid, XAER_PROTO, "xa_open was not called for rmid " + std::to_string(rmid) +
                                      " on this thread");
  }
  if ((*rc)->async.active) {
    return Fail(rmid, XAER_ASYNC, "an asynchronous call is outstanding: xa_complete it first");
  }
  TakeXidQuery(*rc);
  // A connection lost while no branch was open is replaced silently.
  if (Dead(*rc) && (*rc)->state == BranchState::kNone) {
    if (Reconnect(*rc) != XA_OK) {
      return Fail(rmid, XAER_RMFAIL, "PostgreSQL is unreachable: " + tls_errors[rmid]);
    }
  }
  return XA_OK;
}

bool Mine(const RmConn* rc, const XID* xid) {
  return rc->state != BranchState::kNone && rm::XidEqual(rc->xid, *xid);
}

// --------------------------------------------------------------------------
// The switch

int PgOpen(char* info, int rmid, long flags) {
  if (flags & TMASYNC) return Fail(rmid, XAER_ASYNC, "asynchronous XA calls are not supported");
  if (flags != TMNOFLAGS) return Fail(rmid, XAER_INVAL, "xa_open takes no flags");
  if (info == nullptr) return Fail(rmid, XAER_INVAL, "xa_info (a libpq conninfo) is NULL");
  if (Find(rmid) != nullptr) return XA_OK;  // already open on this thread
  auto rc = std::make_unique<RmConn>();
  rc->rmid = rmid;
  rc->conninfo = info;
  int r = Connect(rc.get(), &rc->pg, /*main=*/true);
  if (r == XA_OK) PQregisterEventProc(rc->pg, NoteWrites, "xatm", rc.get());
  if (r != XA_OK) return r;
  tls_conns[rmid] = std::move(rc);
  tls_errors.erase(rmid);
  return XA_OK;
}

int PgClose(char*, int rmid, long flags) {
  if (flags & TMASYNC) return Fail(rmid, XAER_ASYNC, "asynchronous XA calls are not supported");
  RmConn* rc = Find(rmid);
  if (rc == nullptr) return XA_OK;
  if (rm::Associated(rc->state) || rc->state == BranchState::kIdle) {
    return Fail(rmid, XAER_PROTO, "branch " + rm::XidToString(rc->xid) +
                                      " is still open on this connection: end and finish it first");
  }
  tls_conns.erase(rmid);
  return XA_OK;
}

int PgStart(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMJOIN | TMRESUME | TMNOWAIT, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  if ((flags & TMJOIN) && (flags & TMRESUME)) return Fail(rmid, XAER_INVAL, "TMJOIN with TMRESUME");

  if (flags & (TMJOIN | TMRESUME)) {
    rm::Verdict v = rm::Rejoin(&rc->state, Mine(rc, xid), flags, rc->rb_code);
    return v.code == XA_OK ? XA_OK : Fail(rmid, v.code, v.why);
  }
  if (rc->state != BranchState::kNone) {
    rm::Verdict v = rm::AlreadyHasBranch(rc->state, rm::XidEqual(rc->xid, *xid), rc->xid);
    return Fail(rmid, v.code, v.why);
  }
  if (PQtransactionStatus(rc->pg) != PQTRANS_IDLE) {
    return Fail(rmid, XAER_OUTSIDE,
                "the connection is inside a transaction the TM did not start: commit or roll it back");
  }
  rc->wrote = false;
  rc->branch_xid.reset();
  // BEGIN, and unless the caller vouched for its xids, the duplicate check.
  const bool check = !rc->fresh_xids;
  const std::string begin =
      check ? WithGid("BEGIN; EXECUTE " + std::string(kGidCheck) + "(", GidOf(rc, *xid), ")") : std::string("BEGIN");
  const size_t want = check ? 2 : 1;
  std::vector<Result> rs = ExecAll(rc->pg, begin);
  if (check && rs.size() == 2 && std::string_view(SqlState(rs[1].get())) == "26000") {
    // The application deallocated the check (DEALLOCATE ALL, DISCARD ALL):
    // prepare it again.
    Result rb = Exec(rc->pg, "ROLLBACK");
    if (Result p = Exec(rc->pg, PrepareGidCheckSql()); Ok(p)) rs = ExecAll(rc->pg, begin);
  }
  if (rs.size() != want || !std::all_of(rs.begin(), rs.end(), [](const Result& r) { return Ok(r); })) {
    const PGresult* bad = rs.empty() ? nullptr : rs.back().get();
    bool lost = Lost(rc, rc->pg, bad);
    std::string m = ErrorText(rc->pg, bad);
    if (!lost && PQtransactionStatus(rc->pg) != PQTRANS_IDLE) Result rb = Exec(rc->pg, "ROLLBACK");
    return Fail(rmid, lost ? XAER_RMFAIL : XAER_RMERR, "cannot begin the branch: " + m);
  }
  if (check && std::atoi(PQgetvalue(rs[1].get(), 0, 0)) > 0) {
    Result rb = Exec(rc->pg, "ROLLBACK");
    return Fail(rmid, XAER_DUPID, "a prepared transaction with this XID already exists");
  }
  rc->state = BranchState::kActive;
  rc->xid = *xid;
  rc->rb_code = XA_RBROLLBACK;
  return XA_OK;
}

int PgEnd(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMSUCCESS | TMFAIL | TMSUSPEND | TMMIGRATE, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  long kind;
  if (rm::Verdict v = rm::End(&rc->state, Mine(rc, xid), flags, &kind); v.code != XA_OK) {
    return Fail(rmid, v.code, v.why);
  }
  if (kind == TMSUSPEND) return XA_OK;
  if (kind == TMFAIL) return MarkRollbackOnly(rc, XA_RBROLLBACK, "the branch was ended with TMFAIL");
  if (Dead(rc)) {
    return MarkRollbackOnly(rc, XA_RBCOMMFAIL, "the connection to PostgreSQL was lost during the branch");
  }
  if (PQtransactionStatus(rc->pg) == PQTRANS_INERROR) {
    return MarkRollbackOnly(rc, XA_RBROLLBACK,
                            "a statement of the branch failed, so PostgreSQL aborted its transaction");
  }
  if (PQtransactionStatus(rc->pg) != PQTRANS_INTRANS) {
    return MarkRollbackOnly(rc, XA_RBPROTO,
                            "the branch's transaction was ended by a statement on the connection "
                            "(COMMIT, ROLLBACK or PREPARE must be left to the TM)");
  }
  rc->state = BranchState::kIdle;
  // The id the vote needs, unless a write already told that there is one.
  if (!rc->wrote) rc->xid_query_sent = PQsendQuery(rc->pg, XidSql(rc)) == 1;
  return XA_OK;
}

// Resolves a PREPARE whose reply was lost. REQUIRES: the old connection is gone.
int ResolvePrepare(RmConn* rc, const XID& xid, const std::string& pid, const std::string& start,
                   const std::string& pg_xid, const std::string& cause) {
  rc->state = BranchState::kNone;
  std::memset(&rc->xid, 0, sizeof rc->xid);
  if (ReconnectPatiently(rc) != XA_OK) {
    return Fail(rc->rmid, XAER_RMFAIL,
                "the connection was lost during PREPARE TRANSACTION (" + cause +
                    ") and PostgreSQL is unreachable; the branch may be prepared: recovery decides");
  }
  if (int r = EnsureBackendGone(rc, pid, start); r != XA_OK) return r;
  int prepared = GidPrepared(rc->pg, xid);
  if (prepared < 0) return Fail(rc->rmid, XAER_RMFAIL, "cannot read pg_prepared_xacts after reconnecting");
  if (prepared == 1) return XA_OK;
  if (!pg_xid.empty()) {
    Result r = Exec(rc->pg, std::string(rc->modern ? "SELECT pg_xact_status('" : "SELECT txid_status('") +
                                pg_xid + "')");
    if (Ok(r) && !PQgetisnull(r.get(), 0, 0) && std::strcmp(PQgetvalue(r.get(), 0, 0), "committed") == 0) {
      return Fail(rc->rmid, XAER_RMERR, "transaction " + pg_xid + " committed without preparing");
    }
  }
  return Fail(rc->rmid, XA_RBCOMMFAIL,
              "the connection was lost during PREPARE TRANSACTION (" + cause +
                  "); the branch was not prepared and is rolled back");
}

// The checks and the vote's query of xa_prepare. *send: PREPARE is to be
// sent (the branch wrote; *pg_xid is its transaction id, if known); else the
// return value is the vote.
int PrepareChecks(RmConn* rc, XID* xid, std::string* pg_xid, bool* send) {
  const int rmid = rc->rmid;
  *send = false;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  if (!Mine(rc, xid)) {
    int prepared = PQtransactionStatus(rc->pg) == PQTRANS_IDLE ? GidPrepared(rc->pg, *xid) : 0;
    if (prepared == 1) return Fail(rmid, XAER_PROTO, "the branch is already prepared");
    return Fail(rmid, XAER_NOTA, "no such branch on this connection");
  }
  if (rc->state == BranchState::kActive || rc->state == BranchState::kSuspended) {
    return Fail(rmid, XAER_PROTO, "the branch must be ended (xa_end) before it is prepared");
  }
  if (rc->state == BranchState::kRollbackOnly) {
    int code = rc->rb_code;
    ForgetBranch(rc);
    return Fail(rmid, code, "the branch is rollback-only and was rolled back");
  }
  // Still in a healthy transaction block? (A statement may have failed after
  // a TMJOIN, or the application may have ended the transaction itself.)
  PGTransactionStatusType ts = PQtransactionStatus(rc->pg);
  if (ts != PQTRANS_INTRANS) {
    ForgetBranch(rc);
    return Fail(rmid, ts == PQTRANS_INERROR ? XA_RBROLLBACK : XA_RBPROTO,
                "the branch's transaction is not healthy (a statement failed or it was ended on "
                "the connection); rolled back");
  }
  // The transaction id (recorded to resolve a lost PREPARE) tells a
  // read-only branch too: no id was assigned. After a write the RM saw,
  // there is one: PREPARE at once.
  if (rc->xid_result || !rc->wrote) {
    Result r = rc->xid_result ? std::move(rc->xid_result) : Exec(rc->pg, XidSql(rc));
    if (!Ok(r)) {
      if (Lost(rc, rc->pg, r.get())) {
        rc->state = BranchState::kNone;
        return Fail(rmid, XA_RBCOMMFAIL, "the connection was lost before PREPARE: " + ErrorText(rc->pg, r.get()));
      }
      int code = RollbackCode(r.get());
      ForgetBranch(rc);
      return Fail(rmid, code, "cannot prepare: " + ErrorText(rc->pg, r.get()));
    }
    if (PQgetisnull(r.get(), 0, 0)) {
      // Read-only: commit locally, vote XA_RDONLY. Transaction-level advisory
      // locks are released here, before the global transaction ends.
      Result c = Exec(rc->pg, "COMMIT");
      bool ok = Ok(c) && std::strcmp(PQcmdStatus(c.get()), "COMMIT") == 0;
      rc->state = BranchState::kNone;
      if (ok) return XA_RDONLY;
      if (Lost(rc, rc->pg, c.get())) return XA_RDONLY;  // nothing was written either way
      return Fail(rmid, RollbackCode(c.get()), "read-only branch failed to commit: " + ErrorText(rc->pg, c.get()));
    }
    *pg_xid = PQgetvalue(r.get(), 0, 0);
  }
  *send = true;
  return XA_OK;
}

// The vote from PREPARE TRANSACTION's answer p (null: none came).
int PrepareAnswered(RmConn* rc, const XID& xid, Result p, const std::string& pid, const std::string& start,
                    const std::string& pg_xid) {
  const int rmid = rc->rmid;
  if (p && PQresultStatus(p.get()) == PGRES_COMMAND_OK &&
      std::strcmp(PQcmdStatus(p.get()), "PREPARE TRANSACTION") == 0) {
    rc->state = BranchState::kNone;
    std::memset(&rc->xid, 0, sizeof rc->xid);
    return XA_OK;
  }
  if (p && PQresultStatus(p.get()) == PGRES_COMMAND_OK) {
    // PostgreSQL answers PREPARE in an aborted transaction with the tag
    // ROLLBACK and no error: nothing was prepared.
    ForgetBranch(rc);
    return Fail(rmid, XA_RBROLLBACK, std::string("PREPARE TRANSACTION answered ") + PQcmdStatus(p.get()) +
                                         ": the transaction had been aborted, nothing was prepared");
  }
  if (Lost(rc, rc->pg, p.get())) {
    return ResolvePrepare(rc, xid, pid, start, pg_xid, ErrorText(rc->pg, p.get()));
  }
  std::string code = SqlState(p.get());
  std::string m = ErrorText(rc->pg, p.get());
  ForgetBranch(rc);
  if (code == "53200") m += " (every prepared-transaction slot is in use: raise max_prepared_transactions, or resolve forgotten prepared transactions with `xatm list`)";
  if (code == "42710") m += " (another prepared transaction has this XID)";
  return Fail(rmid, code == "42710" ? XA_RBOTHER : RollbackCode(p.get()), "PREPARE TRANSACTION failed: " + m);
}

int PgPrepare(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMASYNC, &rc); r != XA_OK) return r;
  std::string pg_xid;
  bool send = false;
  const int vote = PrepareChecks(rc, xid, &pg_xid, &send);
  if (!(flags & TMASYNC)) {
    if (!send) return vote;
    const std::string pid = rc->backend_pid, start = rc->backend_start;
    XATM_CRASH_POINT("pgsql.prepare.before_send");
    Result p = Exec(rc->pg, WithGid("PREPARE TRANSACTION ", GidOf(rc, *xid)));
    XATM_CRASH_POINT("pgsql.prepare.after_reply");
    return PrepareAnswered(rc, *xid, std::move(p), pid, start, pg_xid);
  }
  // Asynchronous: the vote, or PREPARE sent; xa_complete(handle) answers.
  RmConn::AsyncOp& a = rc->async;
  a = RmConn::AsyncOp{};
  a.active = true;
  a.handle = rc->async_seq = rc->async_seq % 1000000 + 1;
  a.code = vote;
  if (send) {
    a.xid = *xid;
    a.pid = rc->backend_pid;
    a.start = rc->backend_start;
    a.pg_xid = pg_xid;
    XATM_CRASH_POINT("pgsql.prepare.before_send");
    // A failed send is a lost connection: xa_complete resolves it like one.
    a.sent = true;
    a.conn = rc->pg;
    a.send_failed = PQsendQuery(rc->pg, WithGid("PREPARE TRANSACTION ", GidOf(rc, *xid)).c_str()) != 1;
  }
  return a.handle;
}

// The connection that finishes prepared branches by gid: the main one, or
// while it is inside a branch (PostgreSQL refuses COMMIT PREPARED there) the
// auxiliary one, opened on demand. Null if that cannot be opened.
PGconn* FinishingConn(RmConn* rc) {
  if (PQtransactionStatus(rc->pg) == PQTRANS_IDLE) return rc->pg;
  if (rc->aux == nullptr || PQstatus(rc->aux) != CONNECTION_OK) {
    if (rc->aux) PQfinish(rc->aux);
    rc->aux = nullptr;
    if (Connect(rc, &rc->aux, /*main=*/false) != XA_OK) return nullptr;
  }
  return rc->aux;
}

std::string FinishSql(RmConn* rc, const XID& xid, bool commit) {
  return WithGid(commit ? "COMMIT PREPARED " : "ROLLBACK PREPARED ", GidOf(rc, xid));
}

constexpr int kBusy = 1;  // FinishAnswered: another session is finishing it

// The outcome from COMMIT/ROLLBACK PREPARED's answer r on c (null: none came);
// kBusy if another backend is finishing the branch right now.
int FinishAnswered(RmConn* rc, PGconn* c, const Result& r, bool commit) {
  const char* tag = commit ? "COMMIT PREPARED" : "ROLLBACK PREPARED";
  if (r && PQresultStatus(r.get()) == PGRES_COMMAND_OK && std::strcmp(PQcmdStatus(r.get()), tag) == 0) {
    return XA_OK;
  }
  if (Lost(rc, c, r.get())) {
    return Fail(rc->rmid, XAER_RMFAIL, std::string(tag) + ": connection lost (" + ErrorText(c, r.get()) +
                                           "); the outcome is known after reconnecting");
  }
  std::string code = SqlState(r.get());
  std::string m = ErrorText(c, r.get());
  if (code == "42704") return Fail(rc->rmid, XAER_NOTA, "no prepared transaction with this XID: " + m);
  if (code == "55000" && m.find("busy") != std::string::npos) {
    Fail(rc->rmid, XA_RETRY, std::string(tag) + ": another session is finishing it: " + m);
    return kBusy;
  }
  return Fail(rc->rmid, XAER_RMERR, std::string(tag) + " failed: " + m);
}

// COMMIT PREPARED / ROLLBACK PREPARED of a prepared branch by gid, retrying
// while another backend is finishing it.
int FinishPrepared(RmConn* rc, const XID& xid, bool commit) {
  PGconn* c = FinishingConn(rc);
  if (c == nullptr) return XAER_RMFAIL;
  const std::string sql = FinishSql(rc, xid, commit);
  auto deadline = Clock::now() + std::chrono::milliseconds(g_resolve_timeout_ms.load());
  for (;;) {
    XATM_CRASH_POINT(commit ? "pgsql.commit.before_send" : "pgsql.rollback.before_send");
    Result r = Exec(c, sql);
    XATM_CRASH_POINT(commit ? "pgsql.commit.after_reply" : "pgsql.rollback.after_reply");
    const int out = FinishAnswered(rc, c, r, commit);
    if (out != kBusy) return out;
    if (Clock::now() >= deadline) return XA_RETRY;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int OnePhaseCommit(RmConn* rc) {
  PGTransactionStatusType ts = PQtransactionStatus(rc->pg);
  if (ts != PQTRANS_INTRANS) {
    ForgetBranch(rc);
    return Fail(rc->rmid, ts == PQTRANS_INERROR ? XA_RBROLLBACK : XA_RBPROTO,
                "the branch's transaction is not healthy; rolled back");
  }
  const std::string pid = rc->backend_pid, start = rc->backend_start;
  // A crash after the send leaves the COMMIT running on the server.
  const char* sent = "pgsql.onephase.after_send";
  // The transaction id first (xa_end's answer, or asked now), then COMMIT
  // only after a good one: if the connection is lost during COMMIT, the id
  // tells its outcome.
  std::vector<Result> rs;
  rs.push_back(rc->xid_result     ? std::move(rc->xid_result)
               : rc->branch_xid ? std::move(rc->branch_xid)
                                : Exec(rc->pg, XidSql(rc)));
  if (Ok(rs[0])) {
    for (Result& r : ExecAll(rc->pg, "COMMIT", sent)) rs.push_back(std::move(r));
  }
  if (rs.size() == 2 && Ok(rs[1]) && std::strcmp(PQcmdStatus(rs[1].get()), "COMMIT") == 0) {
    rc->state = BranchState::kNone;
    return XA_OK;
  }
  const PGresult* last = rs.empty() ? nullptr : rs.back().get();
  if (Lost(rc, rc->pg, last)) {
    std::string cause = ErrorText(rc->pg, last);
    rc->state = BranchState::kNone;
    if (rs.empty() || !Ok(rs[0]) || PQgetisnull(rs[0].get(), 0, 0)) {
      // Lost before the id was read, or nothing was written: if COMMIT never
      // ran, the server rolled back; a read-only branch has nothing to lose.
      if (!rs.empty() && Ok(rs[0]) && PQgetisnull(rs[0].get(), 0, 0)) return XA_OK;
      return Fail(rc->rmid, XA_RBCOMMFAIL, "the connection was lost before COMMIT: " + cause);
    }
    const std::string pg_xid = PQgetvalue(rs[0].get(), 0, 0);
    if (ReconnectPatiently(rc) != XA_OK || EnsureBackendGone(rc, pid, start) != XA_OK) {
      return Fail(rc->rmid, XAER_RMFAIL, "the connection was lost during COMMIT (" + cause +
                                             ") and the outcome cannot be learnt now");
    }
    Result s = Exec(rc->pg, std::string(rc->modern ? "SELECT pg_xact_status('" : "SELECT txid_status('") +
                                pg_xid + "')");
    if (Ok(s) && !PQgetisnull(s.get(), 0, 0)) {
      std::string st = PQgetvalue(s.get(), 0, 0);
      if (st == "committed") return XA_OK;
      if (st == "aborted") return Fail(rc->rmid, XA_RBCOMMFAIL, "the connection was lost during COMMIT; it was rolled back");
    }
    return Fail(rc->rmid, XAER_RMFAIL, "the connection was lost during COMMIT and its outcome is unknown");
  }
  int code = rs.size() == 2 && PQresultStatus(rs[1].get()) == PGRES_COMMAND_OK ? XA_RBROLLBACK
                                                                               : RollbackCode(last);
  std::string m = rs.size() == 2 && PQresultStatus(rs[1].get()) == PGRES_COMMAND_OK
                      ? std::string("COMMIT answered ") + PQcmdStatus(rs[1].get())
                      : ErrorText(rc->pg, last);
  ForgetBranch(rc);
  return Fail(rc->rmid, code, "one-phase commit rolled back: " + m);
}

int CommitNow(RmConn* rc, XID* xid, long flags);

// With TMASYNC, COMMIT PREPARED of a prepared branch is sent and a handle
// returned (xa_complete gives the outcome); any other commit runs at once and
// its outcome waits for xa_complete.
int PgCommit(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMONEPHASE | TMNOWAIT | TMASYNC, &rc); r != XA_OK) return r;
  if (!(flags & TMASYNC)) return CommitNow(rc, xid, flags);
  RmConn::AsyncOp a;
  a.active = true;
  a.commit = true;
  a.handle = rc->async_seq = rc->async_seq % 1000000 + 1;
  PGconn* c = nullptr;
  if (!rm::XidValid(xid) || Mine(rc, xid) || (flags & TMONEPHASE) || (c = FinishingConn(rc)) == nullptr) {
    a.code = CommitNow(rc, xid, flags & ~TMASYNC);
  } else {
    a.xid = *xid;
    a.conn = c;
    a.sent = true;
    XATM_CRASH_POINT("pgsql.commit.before_send");
    a.send_failed = PQsendQuery(c, FinishSql(rc, *xid, /*commit=*/true).c_str()) != 1;
  }
  rc->async = std::move(a);
  return rc->async.handle;
}

int CommitNow(RmConn* rc, XID* xid, long flags) {
  const int rmid = rc->rmid;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  if (Mine(rc, xid)) {
    if (rc->state == BranchState::kActive || rc->state == BranchState::kSuspended) {
      return Fail(rmid, XAER_PROTO, "the branch must be ended (xa_end) before it is committed");
    }
    if (!(flags & TMONEPHASE)) return Fail(rmid, XAER_PROTO, "the branch is not prepared: prepare it or use TMONEPHASE");
    if (rc->state == BranchState::kRollbackOnly) {
      int code = rc->rb_code;
      ForgetBranch(rc);
      return Fail(rmid, code, "the branch is rollback-only and was rolled back");
    }
    return OnePhaseCommit(rc);
  }
  if (flags & TMONEPHASE) {
    int prepared = PQtransactionStatus(rc->pg) == PQTRANS_IDLE ? GidPrepared(rc->pg, *xid) : 0;
    if (prepared == 1) return Fail(rmid, XAER_PROTO, "the branch is prepared: commit it without TMONEPHASE");
    return Fail(rmid, XAER_NOTA, "no such branch on this connection");
  }
  return FinishPrepared(rc, *xid, /*commit=*/true);
}

int PgRollback(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, 0, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  if (Mine(rc, xid)) {
    if (rc->state == BranchState::kActive || rc->state == BranchState::kSuspended) {
      return Fail(rmid, XAER_PROTO, "the branch is associated with this thread: xa_end it first");
    }
    ForgetBranch(rc);
    return XA_OK;
  }
  return FinishPrepared(rc, *xid, /*commit=*/false);
}

int PgRecover(XID* xids, long count, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMSTARTRSCAN | TMENDRSCAN, &rc); r != XA_OK) return r;
  if (count < 0 || (xids == nullptr && count > 0)) return Fail(rmid, XAER_INVAL, "bad xids/count");
  if (flags & TMSTARTRSCAN) {
    PGconn* c = rc->pg;
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
      if (rc->aux == nullptr || PQstatus(rc->aux) != CONNECTION_OK) {
        if (rc->aux) PQfinish(rc->aux);
        rc->aux = nullptr;
        if (Connect(rc, &rc->aux, false) != XA_OK) return XAER_RMFAIL;
      }
      c = rc->aux;
    }
    Result r = Exec(c, "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared");
    if (!Ok(r)) {
      return Fail(rmid, Lost(rc, c, r.get()) ? XAER_RMFAIL : XAER_RMERR,
                  "cannot read pg_prepared_xacts: " + ErrorText(c, r.get()));
    }
    std::vector<XID> found;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      XID x;
      // Gids of other TMs, or typed by hand, are not ours to report.
      if (GidToXid(PQgetvalue(r.get(), i, 0), &x)) found.push_back(x);
    }
    rc->scan.Start(std::move(found));
  } else if (!rc->scan.open()) {
    return Fail(rmid, XAER_INVAL, "no recovery scan is open: start one with TMSTARTRSCAN");
  }
  return rc->scan.Take(xids, count, flags);
}

int PgForget(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, 0, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  // PostgreSQL never completes a branch heuristically: there is nothing to
  // forget. A prepared branch is not heuristically completed.
  if (!Mine(rc, xid) && PQtransactionStatus(rc->pg) == PQTRANS_IDLE && GidPrepared(rc->pg, *xid) == 1) {
    return Fail(rmid, XAER_PROTO, "the branch is prepared, not heuristically completed");
  }
  if (Mine(rc, xid)) return Fail(rmid, XAER_PROTO, "the branch is not heuristically completed");
  return Fail(rmid, XAER_NOTA, "PostgreSQL keeps no heuristic outcomes");
}

// The answer of an xa_prepare or xa_commit with TMASYNC: *retval gets its
// vote or outcome. TMNOWAIT:
// XA_RETRY while PostgreSQL has not answered; TMMULTIPLE: whichever is
// outstanding (one at most per connection), its handle in *handle.
int PgComplete(int* handle, int* retval, int rmid, long flags) {
  if (flags & TMASYNC) return Fail(rmid, XAER_ASYNC, "xa_complete cannot itself be asynchronous");
  if (flags & ~(TMMULTIPLE | TMNOWAIT)) return Fail(rmid, XAER_INVAL, "unsupported flags for xa_complete");
  RmConn* rc = Find(rmid);
  if (rc == nullptr || !rc->async.active) return Fail(rmid, XAER_PROTO, "no asynchronous operation is outstanding");
  if (handle == nullptr || retval == nullptr) return Fail(rmid, XAER_INVAL, "null handle or retval");
  RmConn::AsyncOp& a = rc->async;
  if (!(flags & TMMULTIPLE) && *handle != a.handle) return Fail(rmid, XAER_INVAL, "no such asynchronous operation");
  if ((flags & TMNOWAIT) && a.sent && !a.send_failed) {
    if (PQconsumeInput(a.conn) == 1 && PQisBusy(a.conn)) return XA_RETRY;
  }
  *handle = a.handle;
  a.active = false;
  if (!a.sent) {
    *retval = a.code;
    return XA_OK;
  }
  Result p;  // stays null if the send failed: no answer ever comes
  while (PGresult* r = a.send_failed ? nullptr : PQgetResult(a.conn)) {
    if (!p) {
      p.reset(r);
    } else {
      PQclear(r);
    }
  }
  if (!a.commit) {
    XATM_CRASH_POINT("pgsql.prepare.after_reply");
    *retval = PrepareAnswered(rc, a.xid, std::move(p), a.pid, a.start, a.pg_xid);
    return XA_OK;
  }
  XATM_CRASH_POINT("pgsql.commit.after_reply");
  const int out = FinishAnswered(rc, a.conn, p, /*commit=*/true);
  // Another backend finishing it (a resolver): wait for it as xa_commit does.
  *retval = out == kBusy ? FinishPrepared(rc, a.xid, /*commit=*/true) : out;
  return XA_OK;
}

}  // namespace

std::string LastError(int rmid) {
  auto it = tls_errors.find(rmid);
  return it == tls_errors.end() ? std::string() : it->second;
}

std::string RedactConninfo(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    if (err) PQfreemem(err);
    return "<conninfo that does not parse>";
  }
  std::string out;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    if (!out.empty()) out += ' ';
    out += o->keyword;
    out += '=';
    out += std::strcmp(o->keyword, "password") == 0 ? "***" : o->val;
  }
  PQconninfoFree(opts);
  return out;
}

void SetResolveTimeoutMs(int ms) { g_resolve_timeout_ms = ms; }

std::string ExecInBranch(int rmid, const std::string& sql) {
  RmConn* rc = Find(rmid);
  if (rc == nullptr || rc->state != BranchState::kActive) return "no active branch of this RM on this thread";
  std::vector<Result> rs = ExecAll(rc->pg, sql + "; " + XidSql(rc));
  if (rs.empty()) return ErrorText(rc->pg, nullptr);
  for (const Result& r : rs) {
    if (!Ok(r)) return ErrorText(rc->pg, r.get());
  }
  rc->branch_xid = std::move(rs.back());
  return "";
}

bool TrustFreshXids(int rmid) {
  RmConn* rc = Find(rmid);
  if (rc == nullptr) return false;
  rc->fresh_xids = true;
  return true;
}

bool BackendOf(int rmid, int* pid, std::string* start) {
  RmConn* rc = Find(rmid);
  if (rc == nullptr || rc->backend_pid.empty()) return false;
  *pid = std::atoi(rc->backend_pid.c_str());
  *start = rc->backend_start;
  return true;
}

}  // namespace xtm::pgsql

extern "C" {

struct xa_switch_t xatm_pgsql_switch = {
    "xatm_pgsql",
    TMNOMIGRATE,
    0,
    xtm::pgsql::PgOpen,
    xtm::pgsql::PgClose,
    xtm::pgsql::PgStart,
    xtm::pgsql::PgEnd,
    xtm::pgsql::PgRollback,
    xtm::pgsql::PgPrepare,
    xtm::pgsql::PgCommit,
    xtm::pgsql::PgRecover,
    xtm::pgsql::PgForget,
    xtm::pgsql::PgComplete,
};

const char* xatm_pgsql_errmsg(int rmid) {
  auto it = xtm::pgsql::tls_errors.find(rmid);
  return it == xtm::pgsql::tls_errors.end() ? "" : it->second.c_str();
}

PGconn* xatm_pgsql_conn(int rmid) {
  xtm::pgsql::RmConn* rc = xtm::pgsql::Find(rmid);
  return rc ? rc->pg : nullptr;
}

}  // extern "C"
