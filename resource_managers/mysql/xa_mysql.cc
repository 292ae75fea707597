// The MySQL/MariaDB resource manager: an X/Open XA switch over MariaDB
// Connector/C.
//
// A branch is the XA transaction of the calling thread's session:
//
//   xa_start     XA START xid (and, when the RM does not know them, the
//                session's Handler_* counters, in the same round trip)
//   ...          the application's statements, on xatm_mysql_conn(rmid)
//   xa_end       the association ends (XA END is sent with the vote). A last
//                statement that failed, or TMFAIL, rolls the branch back.
//   xa_prepare   the counters again, and XA END: no rows written -> XA
//                ROLLBACK, XA_RDONLY (a prepared read-only branch would vanish
//                at a restart: PITFALLS 34); a statement rolled back on the
//                way (Handler_rollback moved: a duplicate key, a failed
//                CHECK, a lock wait timeout) -> XA ROLLBACK, a no vote
//                (PITFALLS 36); else XA PREPARE
//   xa_commit    XA COMMIT xid (XA END + XA COMMIT ONE PHASE with TMONEPHASE)
//   xa_rollback  XA ROLLBACK xid
//   xa_recover   XA RECOVER, binary-safe (PITFALLS 32)
//
// The server ties a prepared branch to the session that prepared it (other
// sessions get XAER_NOTA, and the session itself can do nothing else:
// PITFALLS 28). So the session keeps it ("held") and finishes it when this
// thread commits or rolls it back, the usual case; a thread that starts a
// new branch first ends the session (a new connection: the branch is then
// free for any session). Finishing another session's branch retries while
// XA RECOVER still lists it: the server ends a closed session
// asynchronously (PITFALLS 29).
//
// xids are matched by the server on gtrid and bqual only (PITFALLS 31): a
// branch is finished from another session only once XA RECOVER shows that
// exact xid, formatID included.
//
// Unknown outcomes. A connection lost during XA PREPARE leaves the outcome
// unknown to the client. The RM reconnects, makes sure the old session is
// gone (ended, and waited for), and only then looks: the xid in XA RECOVER
// means prepared; otherwise it was rolled back with its session. A lost
// one-phase commit cannot be looked up: XAER_RMFAIL, outcome unknown.
#include <mysql.h>
#include <mysqld_error.h>
#include <errmsg.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/branch.h"
#include "common/xid_util.h"
#include "mysql/mysql_rm.h"
#include "util/crash_point.h"
#include "xatm/rm_mysql.h"

namespace xtm::mysql {
namespace {

using Clock = std::chrono::steady_clock;
using rm::BranchState;

std::atomic<int> g_resolve_timeout_ms{10000};

// The session counters a vote reads: rows written, and statements rolled
// back inside the transaction.
struct Counters {
  uint64_t written = 0;
  uint64_t rolled_back = 0;
};
constexpr const char* kCountersSql =
    "SHOW SESSION STATUS WHERE Variable_name IN ('Handler_write', 'Handler_update', 'Handler_delete', "
    "'Handler_rollback')";

// One connection of one thread to one RM (rmid).
struct RmConn {
  int rmid = 0;
  ConnParams params;
  MYSQL* my = nullptr;
  bool broken = false;       // lost: replaced at the next call that may
  unsigned long session = 0;  // the server's connection id
  int64_t server_start = 0;   // when the server started (s since the epoch, from Uptime)

  BranchState state = BranchState::kNone;
  XID xid{};
  int rb_code = XA_RBROLLBACK;
  // The counters when the branch started: read with XA START, or known from
  // the last vote when nothing since could have moved them (a status read
  // costs the server about four times a plain statement).
  Counters at_start;
  bool counters_known = false;
  // A branch this session prepared and still holds (PITFALLS 28).
  bool held = false;
  XID held_xid{};

  rm::RecoverCursor scan;

  ~RmConn() {
    if (my) mysql_close(my);
  }
};

thread_local std::map<int, std::unique_ptr<RmConn>> tls_conns;
thread_local std::map<int, std::string> tls_errors;

int Fail(int rmid, int code, std::string msg) {
  tls_errors[rmid] = std::move(msg);
  return code;
}

RmConn* Find(int rmid) {
  auto it = tls_conns.find(rmid);
  return it == tls_conns.end() ? nullptr : it->second.get();
}

// Client-side errors (2000..2999) and the server going away mean the
// connection is lost, not that a statement failed.
bool LostError(unsigned e) {
  return (e >= 2000 && e < 3000) || e == ER_CONNECTION_KILLED || e == ER_SERVER_SHUTDOWN;
}

// The XID as XA's SQL wants it: binary literals, any bytes.
std::string XidSql(const XID& x) {
  return "X'" + rm::Hex(rm::Gtrid(x)) + "',X'" + rm::Hex(rm::Bqual(x)) + "'," + std::to_string(x.formatID);
}

// The result of one statement of a (multi-)statement query.
struct Outcome {
  unsigned error = 0;  // 0: it ran
  std::string message;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<unsigned long>> lengths;
};

// Runs sql (statements separated by ';'); one Outcome per statement that
// ran, the last one with the error that stopped the rest, if any.
std::vector<Outcome> Run(MYSQL* my, const std::string& sql) {
  std::vector<Outcome> out;
  if (mysql_real_query(my, sql.data(), sql.size()) != 0) {
    out.push_back({mysql_errno(my), mysql_error(my), {}, {}});
    return out;
  }
  for (;;) {
    Outcome o;
    if (MYSQL_RES* res = mysql_store_result(my)) {
      const unsigned n = mysql_num_fields(res);
      while (MYSQL_ROW row = mysql_fetch_row(res)) {
        unsigned long* len = mysql_fetch_lengths(res);
        std::vector<std::string> r;
        std::vector<unsigned long> l;
        for (unsigned i = 0; i < n; ++i) {
          r.emplace_back(row[i] ? std::string(row[i], len[i]) : std::string());
          l.push_back(len[i]);
        }
        o.rows.push_back(std::move(r));
        o.lengths.push_back(std::move(l));
      }
      mysql_free_result(res);
    } else if (mysql_field_count(my) != 0) {
      o.error = mysql_errno(my);
      o.message = mysql_error(my);
    }
    out.push_back(std::move(o));
    if (out.back().error != 0) return out;
    const int next = mysql_next_result(my);
    if (next == -1) return out;
    if (next > 0) {
      out.push_back({mysql_errno(my), mysql_error(my), {}, {}});
      return out;
    }
  }
}

bool AllRan(const std::vector<Outcome>& rs, size_t want) {
  return rs.size() == want && rs.back().error == 0;
}

const Outcome& Last(const std::vector<Outcome>& rs) { return rs.back(); }

// What a statement's error makes of the branch.
int RollbackCode(unsigned e) {
  switch (e) {
    case ER_LOCK_DEADLOCK: return XA_RBDEADLOCK;
    case ER_LOCK_WAIT_TIMEOUT: return XA_RBTIMEOUT;
    case ER_DUP_ENTRY:
    case ER_NO_REFERENCED_ROW_2:
    case ER_ROW_IS_REFERENCED_2:
    case 4025:  // ER_CONSTRAINT_FAILED
      return XA_RBINTEGRITY;
    default: return XA_RBROLLBACK;
  }
}

bool ParseCounters(const Outcome& o, Counters* c) {
  if (o.error != 0 || o.rows.size() != 4) return false;
  *c = {};
  for (const auto& r : o.rows) {
    const uint64_t v = std::strtoull(r[1].c_str(), nullptr, 10);
    if (r[0] == "Handler_rollback") {
      c->rolled_back = v;
    } else {
      c->written += v;
    }
  }
  return true;
}

// Connects and checks what the RM needs of the server: a version whose
// prepared branches outlive their session, and durable commits.
int Connect(RmConn* rc, bool first) {
  const ConnParams& p = rc->params;
  std::string why_not;
  MYSQL* my = ConnectWith(p, /*with_database=*/true, CLIENT_MULTI_STATEMENTS, &why_not);
  if (my == nullptr) {
    return Fail(rc->rmid, first ? XAER_RMERR : XAER_RMFAIL,
                "cannot connect to MySQL/MariaDB (" + Describe(p) + "): " + why_not);
  }
  std::vector<Outcome> rs =
      Run(my, "SELECT @@version, @@innodb_flush_log_at_trx_commit, @@log_bin, @@sync_binlog, CONNECTION_ID(), "
              "UNIX_TIMESTAMP() - (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE "
              "VARIABLE_NAME = 'UPTIME')");
  if (!AllRan(rs, 1) || rs[0].rows.size() != 1) {
    std::string m = rs.empty() ? mysql_error(my) : Last(rs).message;
    mysql_close(my);
    return Fail(rc->rmid, XAER_RMERR, "cannot read the server's settings: " + m);
  }
  const std::vector<std::string>& v = rs[0].rows[0];
  if (first) {
    if (std::string why = CheckVersion(v[0]); !why.empty()) {
      mysql_close(my);
      return Fail(rc->rmid, XAER_RMERR, why);
    }
    std::string why = CheckDurability(v[1], v[2], v[3]);
    if (!why.empty() && !p.durability_warn) {
      mysql_close(my);
      return Fail(rc->rmid, XAER_RMERR, why + " (or add durability=warn to accept it)");
    }
    if (!why.empty()) tls_errors[rc->rmid] = "warning: " + why;
  }
  if (rc->my) mysql_close(rc->my);
  rc->my = my;
  rc->broken = false;
  rc->counters_known = false;
  rc->session = std::strtoul(v[4].c_str(), nullptr, 10);
  rc->server_start = std::strtoll(v[5].c_str(), nullptr, 10);
  return XA_OK;
}

// Reconnects until it works or the resolve timeout passes.
int ReconnectPatiently(RmConn* rc) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(g_resolve_timeout_ms.load());
  for (;;) {
    if (Connect(rc, /*first=*/false) == XA_OK) return XA_OK;
    if (Clock::now() >= deadline) return XAER_RMFAIL;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// Makes sure the session `id` of a server that started at `started` no
// longer runs (it may be finishing an XA PREPARE the client will never hear
// about): ends it and waits. REQUIRES: rc->my is a fresh connection.
int EnsureSessionGone(RmConn* rc, unsigned long id, int64_t started) {
  // Another server start: that session died with the server (ids restart).
  if (rc->server_start > started + 2) return XA_OK;
  const auto deadline = Clock::now() + std::chrono::milliseconds(g_resolve_timeout_ms.load());
  bool killed = false;
  for (;;) {
    std::vector<Outcome> rs =
        Run(rc->my, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = " + std::to_string(id));
    if (!AllRan(rs, 1)) return Fail(rc->rmid, XAER_RMFAIL, "cannot look for the old session: " + Last(rs).message);
    if (rs[0].rows.at(0).at(0) == "0") return XA_OK;
    if (!killed) {
      Run(rc->my, "KILL CONNECTION " + std::to_string(id));
      killed = true;
    }
    if (Clock::now() >= deadline) {
      return Fail(rc->rmid, XAER_RMFAIL, "the session (id " + std::to_string(id) +
                                             ") of the lost connection is still running; its outcome is unknown "
                                             "until it ends");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Every prepared xid the server lists, exactly (formatID included).
bool ListPrepared(RmConn* rc, std::vector<XID>* out, std::string* why) {
  std::vector<Outcome> rs = Run(rc->my, "XA RECOVER");
  if (!AllRan(rs, 1)) {
    *why = Last(rs).message;
    if (LostError(Last(rs).error)) rc->broken = true;
    return false;
  }
  out->clear();
  for (const auto& r : rs[0].rows) {
    if (r.size() < 4) continue;
    const long format = std::strtol(r[0].c_str(), nullptr, 10);
    const size_t g = std::strtoul(r[1].c_str(), nullptr, 10), b = std::strtoul(r[2].c_str(), nullptr, 10);
    XID x;
    if (g + b != r[3].size() || !rm::MakeXid(format, std::string_view(r[3]).substr(0, g),
                                             std::string_view(r[3]).substr(g, b), &x)) {
      continue;
    }
    out->push_back(x);
  }
  return true;
}

// 1 if exactly xid is prepared, 0 if not, -1 (with the message set) on error.
int Prepared(RmConn* rc, const XID& xid) {
  std::vector<XID> all;
  std::string why;
  if (!ListPrepared(rc, &all, &why)) {
    Fail(rc->rmid, XAER_RMFAIL, "cannot read XA RECOVER: " + why);
    return -1;
  }
  for (const XID& x : all) {
    if (rm::XidEqual(x, xid)) return 1;
  }
  return 0;
}

// The session is ended and a new one opened: a branch it held is then free
// for any session to finish.
int Detach(RmConn* rc) {
  rc->held = false;
  if (rc->my) mysql_close(rc->my);
  rc->my = nullptr;
  return Connect(rc, /*first=*/false);
}

// Drops the branch, rolling back what the server still has of it.
void ForgetBranch(RmConn* rc, bool ended) {
  rc->counters_known = false;  // a rollback moves Handler_rollback
  if (!rc->broken && rc->state != BranchState::kNone) {
    Run(rc->my, (ended ? "" : "XA END " + XidSql(rc->xid) + "; ") + "XA ROLLBACK " + XidSql(rc->xid));
  }
  rc->state = BranchState::kNone;
  std::memset(&rc->xid, 0, sizeof rc->xid);
}

// The branch becomes rollback-only: its work is rolled back at once (so no
// lock outlives it), and later calls report code.
int MarkRollbackOnly(RmConn* rc, int code, std::string why) {
  rc->counters_known = false;
  if (!rc->broken) Run(rc->my, "XA END " + XidSql(rc->xid) + "; XA ROLLBACK " + XidSql(rc->xid));
  rc->state = BranchState::kRollbackOnly;
  rc->rb_code = code;
  return Fail(rc->rmid, code, std::move(why));
}

// Common checks of every call but xa_open; sets *rc.
int Enter(int rmid, long flags, long allowed, RmConn** rc) {
  if (flags & TMASYNC) return Fail(rmid, XAER_ASYNC, "asynchronous XA calls are not supported");
  if (flags & ~allowed) return Fail(rmid, XAER_INVAL, "unsupported flags for this call");
  *rc = Find(rmid);
  if (*rc == nullptr) {
    return Fail(rmid, XAER_PROTO, "xa_open was not called for rmid " + std::to_string(rmid) + " on this thread");
  }
  // A connection lost while no branch was open on it is replaced silently.
  if ((*rc)->broken && (*rc)->state == BranchState::kNone) {
    (*rc)->held = false;
    if (Connect(*rc, /*first=*/false) != XA_OK) {
      return Fail(rmid, XAER_RMFAIL, "MySQL/MariaDB is unreachable: " + tls_errors[rmid]);
    }
  }
  return XA_OK;
}

bool Mine(const RmConn* rc, const XID* xid) {
  return rc->state != BranchState::kNone && rm::XidEqual(rc->xid, *xid);
}

// --------------------------------------------------------------------------
// The switch

int MyOpen(char* info, int rmid, long flags) {
  if (flags & TMASYNC) return Fail(rmid, XAER_ASYNC, "asynchronous XA calls are not supported");
  if (flags != TMNOFLAGS) return Fail(rmid, XAER_INVAL, "xa_open takes no flags");
  if (info == nullptr) return Fail(rmid, XAER_INVAL, "xa_info (key=value pairs) is NULL");
  if (Find(rmid) != nullptr) return XA_OK;  // already open on this thread
  auto rc = std::make_unique<RmConn>();
  rc->rmid = rmid;
  tls_errors.erase(rmid);
  if (std::string why = ParseConnParams(info, &rc->params); !why.empty()) return Fail(rmid, XAER_INVAL, why);
  if (int r = Connect(rc.get(), /*first=*/true); r != XA_OK) return r;
  tls_conns[rmid] = std::move(rc);
  return XA_OK;
}

int MyClose(char*, int rmid, long flags) {
  if (flags & TMASYNC) return Fail(rmid, XAER_ASYNC, "asynchronous XA calls are not supported");
  RmConn* rc = Find(rmid);
  if (rc == nullptr) return XA_OK;
  if (rm::Associated(rc->state) || rc->state == BranchState::kIdle) {
    return Fail(rmid, XAER_PROTO,
                "branch " + rm::XidToString(rc->xid) + " is still open on this connection: end and finish it first");
  }
  tls_conns.erase(rmid);  // a held branch stays prepared, free for any session
  return XA_OK;
}

int MyStart(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMJOIN | TMRESUME | TMNOWAIT, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  if (xid->formatID < 0) return Fail(rmid, XAER_INVAL, "MySQL takes formatIDs from 0 to 2147483647");
  if ((flags & TMJOIN) && (flags & TMRESUME)) return Fail(rmid, XAER_INVAL, "TMJOIN with TMRESUME");
  if (flags & (TMJOIN | TMRESUME)) {
    rm::Verdict v = rm::Rejoin(&rc->state, Mine(rc, xid), flags, rc->rb_code);
    return v.code == XA_OK ? XA_OK : Fail(rmid, v.code, v.why);
  }
  if (rc->state != BranchState::kNone) {
    rm::Verdict v = rm::AlreadyHasBranch(rc->state, rm::XidEqual(rc->xid, *xid), rc->xid);
    return Fail(rmid, v.code, v.why);
  }
  // A session that holds a prepared branch can start nothing else.
  if (rc->held && Detach(rc) != XA_OK) return XAER_RMFAIL;
  const bool read = !rc->counters_known;
  std::vector<Outcome> rs = Run(rc->my, "XA START " + XidSql(*xid) + (read ? std::string("; ") + kCountersSql : ""));
  if (!AllRan(rs, read ? 2 : 1) || (read && !ParseCounters(rs[1], &rc->at_start))) {
    const Outcome& bad = Last(rs);
    if (LostError(bad.error)) {
      rc->broken = true;
      return Fail(rmid, XAER_RMFAIL, "cannot begin the branch: " + bad.message);
    }
    rc->counters_known = false;
    if (read && rs.size() == 2) Run(rc->my, "XA END " + XidSql(*xid) + "; XA ROLLBACK " + XidSql(*xid));
    if (bad.error == ER_XAER_DUPID) return Fail(rmid, XAER_DUPID, "a branch with this XID already exists: " + bad.message);
    if (bad.error == ER_XAER_OUTSIDE) {
      return Fail(rmid, XAER_OUTSIDE,
                  "the connection is inside a transaction the TM did not start: commit or roll it back");
    }
    return Fail(rmid, XAER_RMERR, "cannot begin the branch: " + bad.message);
  }
  rc->state = BranchState::kActive;
  rc->xid = *xid;
  rc->rb_code = XA_RBROLLBACK;
  return XA_OK;
}

int MyEnd(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMSUCCESS | TMFAIL | TMSUSPEND | TMMIGRATE, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  const unsigned last_error = rc->my ? mysql_errno(rc->my) : 0;
  const std::string last_message = rc->my ? mysql_error(rc->my) : "";
  long kind;
  if (rm::Verdict v = rm::End(&rc->state, Mine(rc, xid), flags, &kind); v.code != XA_OK) {
    return Fail(rmid, v.code, v.why);
  }
  if (kind == TMSUSPEND) return XA_OK;
  if (kind == TMFAIL) return MarkRollbackOnly(rc, XA_RBROLLBACK, "the branch was ended with TMFAIL");
  if (rc->broken || LostError(last_error)) {
    rc->broken = true;
    return MarkRollbackOnly(rc, XA_RBCOMMFAIL, "the connection to MySQL/MariaDB was lost during the branch");
  }
  // The application's last statement failed: what it did not do must not
  // commit with the rest (PITFALLS 36).
  if (last_error != 0) {
    return MarkRollbackOnly(rc, RollbackCode(last_error),
                            "a statement of the branch failed (" + last_message + "); the branch is rolled back");
  }
  rc->state = BranchState::kIdle;
  return XA_OK;
}

// XA END and the vote's counters. XA_OK and *wrote, or the branch is rolled
// back and forgotten (the code says why).
int EndForVote(RmConn* rc, bool* wrote) {
  std::vector<Outcome> rs = Run(rc->my, std::string(kCountersSql) + "; XA END " + XidSql(rc->xid));
  Counters now;
  if (AllRan(rs, 2) && ParseCounters(rs[0], &now)) {
    *wrote = now.written != rc->at_start.written;
    if (now.rolled_back == rc->at_start.rolled_back) {
      // What the session does next (XA PREPARE, XA COMMIT) moves neither
      // counter: they are the next branch's start, unless a rollback comes.
      rc->at_start = now;
      rc->counters_known = true;
      return XA_OK;
    }
    ForgetBranch(rc, /*ended=*/true);
    return Fail(rc->rmid, XA_RBROLLBACK,
                "a statement of the branch failed and was undone by the server (a duplicate key, a failed "
                "constraint, a lock wait timeout...): the branch votes no, so that the rest does not commit "
                "without it");
  }
  const Outcome& bad = Last(rs);
  if (LostError(bad.error)) {
    rc->broken = true;
    rc->state = BranchState::kNone;
    return Fail(rc->rmid, XA_RBCOMMFAIL, "the connection was lost before the vote: " + bad.message);
  }
  // A deadlock made it rollback-only (PITFALLS 35): XA ROLLBACK clears it.
  const int code = bad.message.find("ROLLBACK ONLY") != std::string::npos ? XA_RBDEADLOCK : XA_RBROLLBACK;
  ForgetBranch(rc, /*ended=*/rs.size() == 2);
  return Fail(rc->rmid, code, "the branch cannot be ended: " + bad.message);
}

// Resolves an XA PREPARE whose reply was lost.
int ResolvePrepare(RmConn* rc, const XID& xid, unsigned long session, int64_t started, const std::string& cause) {
  rc->state = BranchState::kNone;
  std::memset(&rc->xid, 0, sizeof rc->xid);
  if (ReconnectPatiently(rc) != XA_OK) {
    return Fail(rc->rmid, XAER_RMFAIL, "the connection was lost during XA PREPARE (" + cause +
                                           ") and the server is unreachable; the branch may be prepared: "
                                           "recovery decides");
  }
  if (int r = EnsureSessionGone(rc, session, started); r != XA_OK) return r;
  const int prepared = Prepared(rc, xid);
  if (prepared < 0) return XAER_RMFAIL;
  if (prepared == 1) return XA_OK;
  return Fail(rc->rmid, XA_RBCOMMFAIL, "the connection was lost during XA PREPARE (" + cause +
                                           "); the branch was not prepared and is rolled back");
}

int MyPrepare(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, 0, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  if (!Mine(rc, xid)) {
    if ((rc->held && rm::XidEqual(rc->held_xid, *xid)) || Prepared(rc, *xid) == 1) {
      return Fail(rmid, XAER_PROTO, "the branch is already prepared");
    }
    return Fail(rmid, XAER_NOTA, "no such branch on this connection");
  }
  if (rm::Associated(rc->state)) return Fail(rmid, XAER_PROTO, "the branch must be ended (xa_end) before it is prepared");
  if (rc->state == BranchState::kRollbackOnly) {
    const int code = rc->rb_code;
    rc->state = BranchState::kNone;
    return Fail(rmid, code, "the branch is rollback-only and was rolled back");
  }
  bool wrote = true;
  if (int r = EndForVote(rc, &wrote); r != XA_OK) return r;
  if (!wrote) {
    // Nothing to keep: a prepared read-only branch would vanish at a server
    // restart and cannot be committed from another session (PITFALLS 34).
    // Committed in one phase (a rollback would move Handler_rollback).
    if (!AllRan(Run(rc->my, "XA COMMIT " + XidSql(*xid) + " ONE PHASE"), 1)) ForgetBranch(rc, /*ended=*/true);
    rc->state = BranchState::kNone;
    std::memset(&rc->xid, 0, sizeof rc->xid);
    return XA_RDONLY;
  }
  const unsigned long session = rc->session;
  const int64_t started = rc->server_start;
  XATM_CRASH_POINT("mysql.prepare.before_send");
  std::vector<Outcome> rs = Run(rc->my, "XA PREPARE " + XidSql(*xid));
  XATM_CRASH_POINT("mysql.prepare.after_reply");
  if (AllRan(rs, 1)) {
    rc->state = BranchState::kNone;
    rc->held = true;
    rc->held_xid = *xid;
    std::memset(&rc->xid, 0, sizeof rc->xid);
    return XA_OK;
  }
  const Outcome& bad = Last(rs);
  if (LostError(bad.error)) {
    rc->broken = true;
    return ResolvePrepare(rc, *xid, session, started, bad.message);
  }
  const int code = bad.message.find("ROLLBACK ONLY") != std::string::npos ? XA_RBDEADLOCK : RollbackCode(bad.error);
  ForgetBranch(rc, /*ended=*/true);
  return Fail(rmid, code, "XA PREPARE failed: " + bad.message);
}

// XA COMMIT / XA ROLLBACK of a prepared branch: on the session that holds
// it, or (once XA RECOVER shows exactly this xid) on this one, retrying
// while the session that prepared it is still ending (PITFALLS 29).
int FinishPrepared(RmConn* rc, const XID& xid, bool commit) {
  const std::string sql = std::string(commit ? "XA COMMIT " : "XA ROLLBACK ") + XidSql(xid);
  const char* what = commit ? "XA COMMIT" : "XA ROLLBACK";
  if (!commit) rc->counters_known = false;  // a rollback moves Handler_rollback
  if (rc->held && rm::XidEqual(rc->held_xid, xid)) {
    XATM_CRASH_POINT(commit ? "mysql.commit.before_send" : "mysql.rollback.before_send");
    std::vector<Outcome> rs = Run(rc->my, sql);
    XATM_CRASH_POINT(commit ? "mysql.commit.after_reply" : "mysql.rollback.after_reply");
    if (AllRan(rs, 1)) {
      rc->held = false;
      return XA_OK;
    }
    if (LostError(Last(rs).error)) {
      rc->broken = true;
      rc->held = false;
      return Fail(rc->rmid, XAER_RMFAIL, std::string(what) + ": connection lost (" + Last(rs).message +
                                             "); the outcome is known after reconnecting");
    }
    return Fail(rc->rmid, XAER_RMERR, std::string(what) + " failed: " + Last(rs).message);
  }
  if (rc->state != BranchState::kNone) {
    return Fail(rc->rmid, XAER_PROTO, "this connection has an open branch: finish it first");
  }
  // A branch this session holds is released first: it can do nothing else.
  if (rc->held && Detach(rc) != XA_OK) return XAER_RMFAIL;
  const auto deadline = Clock::now() + std::chrono::milliseconds(g_resolve_timeout_ms.load());
  for (;;) {
    const int prepared = Prepared(rc, xid);
    if (prepared < 0) return XAER_RMFAIL;
    if (prepared == 0) return Fail(rc->rmid, XAER_NOTA, "no prepared branch with this XID");
    XATM_CRASH_POINT(commit ? "mysql.commit.before_send" : "mysql.rollback.before_send");
    std::vector<Outcome> rs = Run(rc->my, sql);
    XATM_CRASH_POINT(commit ? "mysql.commit.after_reply" : "mysql.rollback.after_reply");
    if (AllRan(rs, 1)) return XA_OK;
    const Outcome& bad = Last(rs);
    if (LostError(bad.error)) {
      rc->broken = true;
      return Fail(rc->rmid, XAER_RMFAIL, std::string(what) + ": connection lost (" + bad.message +
                                             "); the outcome is known after reconnecting");
    }
    if (bad.error == ER_XAER_NOTA) {
      // Listed, but another session still holds it (or is ending).
      if (Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      return Fail(rc->rmid, XA_RETRY,
                  std::string(what) + ": the session that prepared the branch still holds it: " + bad.message);
    }
    if (bad.error == ER_XA_RBROLLBACK) return Fail(rc->rmid, XA_RBROLLBACK, std::string(what) + ": " + bad.message);
    return Fail(rc->rmid, XAER_RMERR, std::string(what) + " failed: " + bad.message);
  }
}

int OnePhaseCommit(RmConn* rc) {
  bool wrote = true;
  if (int r = EndForVote(rc, &wrote); r != XA_OK) return r;
  const std::string x = XidSql(rc->xid);
  XATM_CRASH_POINT("mysql.onephase.before_send");
  std::vector<Outcome> rs = Run(rc->my, "XA COMMIT " + x + " ONE PHASE");
  if (AllRan(rs, 1)) {
    rc->state = BranchState::kNone;
    return XA_OK;
  }
  const Outcome& bad = Last(rs);
  if (LostError(bad.error)) {
    rc->broken = true;
    rc->state = BranchState::kNone;
    if (!wrote) return XA_OK;  // nothing was written either way
    return Fail(rc->rmid, XAER_RMFAIL, "the connection was lost during XA COMMIT ONE PHASE (" + bad.message +
                                           "); its outcome is unknown");
  }
  const int code = bad.message.find("ROLLBACK ONLY") != std::string::npos ? XA_RBDEADLOCK : RollbackCode(bad.error);
  ForgetBranch(rc, /*ended=*/true);
  return Fail(rc->rmid, code, "one-phase commit rolled back: " + bad.message);
}

int MyCommit(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMONEPHASE | TMNOWAIT, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  if (Mine(rc, xid)) {
    if (rm::Associated(rc->state)) return Fail(rmid, XAER_PROTO, "the branch must be ended (xa_end) before it is committed");
    if (!(flags & TMONEPHASE)) return Fail(rmid, XAER_PROTO, "the branch is not prepared: prepare it or use TMONEPHASE");
    if (rc->state == BranchState::kRollbackOnly) {
      const int code = rc->rb_code;
      rc->state = BranchState::kNone;
      return Fail(rmid, code, "the branch is rollback-only and was rolled back");
    }
    return OnePhaseCommit(rc);
  }
  if (flags & TMONEPHASE) {
    if ((rc->held && rm::XidEqual(rc->held_xid, *xid)) || (rc->state == BranchState::kNone && Prepared(rc, *xid) == 1)) {
      return Fail(rmid, XAER_PROTO, "the branch is prepared: commit it without TMONEPHASE");
    }
    return Fail(rmid, XAER_NOTA, "no such branch on this connection");
  }
  return FinishPrepared(rc, *xid, /*commit=*/true);
}

int MyRollback(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, 0, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  if (Mine(rc, xid)) {
    if (rm::Associated(rc->state)) return Fail(rmid, XAER_PROTO, "the branch is associated with this thread: xa_end it first");
    if (rc->state == BranchState::kRollbackOnly) {
      rc->state = BranchState::kNone;
    } else {
      ForgetBranch(rc, /*ended=*/false);
    }
    return XA_OK;
  }
  return FinishPrepared(rc, *xid, /*commit=*/false);
}

int MyRecover(XID* xids, long count, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMSTARTRSCAN | TMENDRSCAN, &rc); r != XA_OK) return r;
  if (count < 0 || (xids == nullptr && count > 0)) return Fail(rmid, XAER_INVAL, "bad xids/count");
  if (flags & TMSTARTRSCAN) {
    std::vector<XID> found;
    std::string why;
    if (!ListPrepared(rc, &found, &why)) {
      return Fail(rmid, rc->broken ? XAER_RMFAIL : XAER_RMERR, "cannot read XA RECOVER: " + why);
    }
    rc->scan.Start(std::move(found));
  } else if (!rc->scan.open()) {
    return Fail(rmid, XAER_INVAL, "no recovery scan is open: start one with TMSTARTRSCAN");
  }
  return rc->scan.Take(xids, count, flags);
}

int MyForget(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, 0, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  // MySQL never completes a branch heuristically: there is nothing to forget.
  if (Mine(rc, xid) || (rc->held && rm::XidEqual(rc->held_xid, *xid)) ||
      (rc->state == BranchState::kNone && Prepared(rc, *xid) == 1)) {
    return Fail(rmid, XAER_PROTO, "the branch is not heuristically completed");
  }
  return Fail(rmid, XAER_NOTA, "MySQL/MariaDB keeps no heuristic outcomes");
}

int MyComplete(int*, int*, int rmid, long flags) {
  if (flags & TMASYNC) return Fail(rmid, XAER_ASYNC, "asynchronous XA calls are not supported");
  return Fail(rmid, XAER_PROTO, "no asynchronous operation is outstanding");
}

}  // namespace

std::string LastError(int rmid) {
  auto it = tls_errors.find(rmid);
  return it == tls_errors.end() ? std::string() : it->second;
}

void SetResolveTimeoutMs(int ms) { g_resolve_timeout_ms = ms; }

bool HoldsPrepared(int rmid) {
  RmConn* rc = Find(rmid);
  return rc != nullptr && rc->held;
}

}  // namespace xtm::mysql

extern "C" {

struct xa_switch_t xatm_mysql_switch = {
    "xatm_mysql",
    TMNOMIGRATE,
    0,
    xtm::mysql::MyOpen,
    xtm::mysql::MyClose,
    xtm::mysql::MyStart,
    xtm::mysql::MyEnd,
    xtm::mysql::MyRollback,
    xtm::mysql::MyPrepare,
    xtm::mysql::MyCommit,
    xtm::mysql::MyRecover,
    xtm::mysql::MyForget,
    xtm::mysql::MyComplete,
};

const char* xatm_mysql_errmsg(int rmid) {
  auto it = xtm::mysql::tls_errors.find(rmid);
  return it == xtm::mysql::tls_errors.end() ? "" : it->second.c_str();
}

MYSQL* xatm_mysql_conn(int rmid) {
  xtm::mysql::RmConn* rc = xtm::mysql::Find(rmid);
  return rc ? rc->my : nullptr;
}

}  // extern "C"
