// What the PostgreSQL RM offers the TM beside its switch (common/rm_extras.h):
// session tags and the ending of a dead process's backends, the transaction
// timeout, and decision rows in xatm.decision for a last-resource commit.
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/rm_extras.h"
#include "common/xid_util.h"
#include "pgsql/pgsql_rm.h"
#include "xatm/rm_pgsql.h"

namespace xtm::pgsql {
namespace {

using Clock = std::chrono::steady_clock;

// How long a fenced read waits for a lock held by a transaction that may be
// committing a decision row before it leaves the transaction in doubt.
constexpr int kFenceWaitMs = 2000;
// xatm.decision takes one row in and one out per transaction: between
// autovacuum's visits (a minute apart by default) its dead rows would pile up
// and make every insert costlier. The RM vacuums it itself after this many
// rows, at most once per interval.
constexpr uint64_t kVacuumEveryRows = 1000;
constexpr auto kVacuumInterval = std::chrono::seconds(1);

// Whether a session's transactions are read-only by default (reported by the
// server: default_transaction_read_only, or a hot standby). Such a branch
// cannot write a decision row, so it is never the last resource.
bool ReadOnlySession(PGconn* c) {
  for (const char* p : {"default_transaction_read_only", "in_hot_standby"}) {
    const char* v = PQparameterStatus(c, p);
    if (v && std::strcmp(v, "on") == 0) return true;
  }
  return false;
}

// libpq's message for a failed statement (r) or connection, without its
// trailing newline.
std::string PgMessage(PGconn* c, const PGresult* r) {
  std::string m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

// Whether a statement on xatm.decision failed because there is no such
// table (or schema): the only failure that means "no decision here".
bool NoDecisionTable(const PGresult* r) {
  const char* code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  return code && (std::strcmp(code, "42P01") == 0 || std::strcmp(code, "3F000") == 0);
}

// PostgreSQL literals for binary gtrids (xatm.decision's bytea key).
std::string PgBytea(const std::string& bytes) { return "decode('" + rm::Hex(bytes) + "', 'hex')"; }
std::string PgByteaList(const std::vector<std::string>& all) {
  std::string out;
  for (const std::string& b : all) {
    if (!out.empty()) out += ", ";
    out += PgBytea(b);
  }
  return out;
}

// The conninfo with the TM's session tag as application_name.
std::string TagConninfo(const std::string& conninfo, const std::string& tag) {
  if (conninfo.rfind("postgresql://", 0) == 0 || conninfo.rfind("postgres://", 0) == 0) {
    return conninfo + (conninfo.find('?') == std::string::npos ? "?" : "&") + "application_name=" + tag;
  }
  return conninfo + " application_name=" + tag;
}

class PgsqlExtras final : public rm::RmExtras {
 public:
  explicit PgsqlExtras(const rm::RmParams& p) : p_(p) {}

  std::string XaInfo(const std::string& session_tag) const override { return TagConninfo(p_.conninfo, session_tag); }
  std::string LastError(int rmid) const override { return pgsql::LastError(rmid); }
  void* Native(int rmid) const override { return xatm_pgsql_conn(rmid); }
  void TrustFreshXids(int rmid) const override { pgsql::TrustFreshXids(rmid); }
  bool TakesAsync() const override { return true; }

  // Ends the branch's session: PostgreSQL rolls its transaction back and
  // frees its row locks; the owner's next call finds the connection gone.
  bool AbortFromAnotherThread(void* native) const override {
    const int pid = PQbackendPID(static_cast<PGconn*>(native));
    PGconn* c = PQconnectdb(p_.conninfo.c_str());
    bool ok = false;
    if (PQstatus(c) == CONNECTION_OK && pid > 0) {
      PGresult* r = PQexec(c, ("SELECT pg_terminate_backend(" + std::to_string(pid) + ")").c_str());
      ok = PQresultStatus(r) == PGRES_TUPLES_OK;
      PQclear(r);
    }
    PQfinish(c);
    return ok;
  }

  bool SessionOf(int rmid, int* pid, std::string* start) const override { return BackendOf(rmid, pid, start); }

  bool EndDeadSessions(const rm::DeadSessions& dead, int* ended, std::string* why) override;

  LastResource LastResourceKind() const override { return LastResource::kServer; }
  std::string EnableDecisionRows() override;
  bool CanDecide(void* native) const override {
    return decision_table_ && native != nullptr && !ReadOnlySession(static_cast<PGconn*>(native));
  }
  // Its COMMIT is the commit point: it waits for the WAL flush (and the
  // synchronous standbys) whatever the role or database set; stronger
  // settings (remote_write, remote_apply) are kept. In the same round trip
  // the RM reads the branch's transaction id, which its one-phase commit
  // would otherwise ask for in one of its own.
  std::string WriteDecisionRow(int rmid, const std::string& gtrid, const std::vector<std::string>& finished) override {
    const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
    std::string sql =
        "SELECT set_config('synchronous_commit', 'on', true) WHERE current_setting('synchronous_commit') IN "
        "('off', 'local'); INSERT INTO xatm.decision (gtrid, decided_at) VALUES (" + PgBytea(gtrid) + ", " +
        std::to_string(now_s) + ")";
    if (!finished.empty()) sql += "; DELETE FROM xatm.decision WHERE gtrid IN (" + PgByteaList(finished) + ")";
    return ExecInBranch(rmid, sql);
  }
  void DecisionRowCommitted() override { ++rows_since_vacuum_; }
  void Maintain() override {
    if (!decision_table_ || rows_since_vacuum_ < kVacuumEveryRows || Clock::now() < next_vacuum_) return;
    next_vacuum_ = Clock::now() + kVacuumInterval;
    Vacuum();
  }
  int ReadDecisionRows(std::set<std::string>* out, const std::string* only, std::string* why) override;
  int FencedDecisionRow(const std::string& gtrid, rm::FencedRead* pass, std::string* why) override;
  bool DeleteDecisionRows(const std::vector<std::string>& gtrids) override {
    if (gtrids.empty()) return true;
    PGconn* own;
    PGconn* c = FreeConnection(&own);
    PGresult* r = PQstatus(c) == CONNECTION_OK
                      ? PQexec(c, ("DELETE FROM xatm.decision WHERE gtrid IN (" + PgByteaList(gtrids) + ")").c_str())
                      : nullptr;
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (own) PQfinish(own);
    return ok;
  }

 private:
  // A connection for statements outside any branch: this thread's own when
  // it is open and free, else a new one, left in *own for PQfinish.
  PGconn* FreeConnection(PGconn** own) const {
    *own = nullptr;
    PGconn* c = xatm_pgsql_conn(p_.rmid);
    if (c == nullptr || PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE) {
      c = *own = PQconnectdb(p_.conninfo.c_str());
    }
    return c;
  }
  // Without truncating the table: that would take a lock that the next
  // transaction's decision row waits for.
  void Vacuum() {
    rows_since_vacuum_ = 0;
    PGconn* own;
    PGconn* c = FreeConnection(&own);
    PGresult* r = PQstatus(c) == CONNECTION_OK ? PQexec(c, "VACUUM (TRUNCATE false) xatm.decision") : nullptr;
    PQclear(r);
    if (own) PQfinish(own);
  }

  const rm::RmParams p_;
  std::atomic<bool> decision_table_{false};
  std::atomic<uint64_t> rows_since_vacuum_{0};
  Clock::time_point next_vacuum_ = Clock::now();  // the TM's background thread only
};

// The backends that dead incarnations registered (pid and start time: the
// application cannot change them), and, for those whose registrations are
// gone (a restarted server's earlier sessions), the sessions tagged with a
// dead incarnation (xatm/<node>/<incarnation>, by XaInfo).
bool PgsqlExtras::EndDeadSessions(const rm::DeadSessions& dead, int* ended, std::string* why) {
  *ended = 0;
  PGconn* c = PQconnectdb(p_.conninfo.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    *why = PgMessage(c, nullptr);
    PQfinish(c);
    return false;
  }
  std::string prefix = "xatm/";
  prefix += dead.node_hex;
  prefix += '/';
  std::string live_list;
  for (uint32_t i : dead.live) {
    if (!live_list.empty()) live_list += ',';
    live_list += std::to_string(i);
  }
  const std::string inc = "split_part(application_name, '/', 3)";
  std::string where = "application_name LIKE '" + prefix + "%' AND " + inc + " ~ '^[0-9]{1,10}$' AND " + inc +
                      "::bigint <= " + std::to_string(dead.max);
  if (!live_list.empty()) where += " AND " + inc + "::bigint NOT IN (" + live_list + ")";
  for (const rm::DeadSessions::Backend& b : dead.backends) {
    if (b.pid <= 0) continue;
    char* start = PQescapeLiteral(c, b.start.data(), b.start.size());
    if (start == nullptr) continue;
    where += " OR (pid = " + std::to_string(b.pid) + " AND backend_start = " + start + "::timestamptz)";
    PQfreemem(start);
  }
  where = "(" + where + ") AND pid <> pg_backend_pid()";
  PGresult* r = PQexec(c, ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE " + where).c_str());
  *ended = PQresultStatus(r) == PGRES_TUPLES_OK ? std::atoi(PQgetvalue(r, 0, 0)) : 0;
  PQclear(r);
  // Wait until they are gone: one may still be finishing a PREPARE.
  bool gone = false;
  for (int i = 0; i < 1000 && !gone; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    r = PQexec(c, ("SELECT count(*) FROM pg_stat_activity WHERE " + where).c_str());
    gone = PQresultStatus(r) == PGRES_TUPLES_OK && std::atoi(PQgetvalue(r, 0, 0)) == 0;
    PQclear(r);
  }
  PQfinish(c);
  if (!gone) *why = "a backend of a dead session is still running after it was terminated";
  return gone;
}

std::string PgsqlExtras::EnableDecisionRows() {
  PGconn* own;
  PGconn* c = FreeConnection(&own);
  if (PQstatus(c) == CONNECTION_OK && ReadOnlySession(c)) {
    if (own) PQfinish(own);
    return "";  // never the last resource (CanDecide), and nothing to create
  }
  auto exists = [&] {
    PGresult* r = PQexec(c, "SELECT to_regclass('xatm.decision') IS NOT NULL");
    bool yes = PQresultStatus(r) == PGRES_TUPLES_OK && std::strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return yes;
  };
  std::string why;
  if (PQstatus(c) != CONNECTION_OK) {
    why = PgMessage(c, nullptr);
  } else if (!exists()) {
    // Two processes may create it at once: the loser's error is ignored if
    // the table is there after all.
    PGresult* r = PQexec(c, "CREATE SCHEMA IF NOT EXISTS xatm; "
                            "CREATE TABLE IF NOT EXISTS xatm.decision "
                            "(gtrid bytea PRIMARY KEY, decided_at bigint NOT NULL)");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) why = PgMessage(c, r);
    PQclear(r);
    if (!why.empty() && exists()) why.clear();
  }
  if (own) PQfinish(own);
  if (!why.empty()) {
    return "last_resource_commit = true needs the table xatm.decision in the database of \"" + p_.name +
           "\", and it cannot be created: " + why +
           ". Create it once as a user who may (CREATE SCHEMA xatm; CREATE TABLE xatm.decision (gtrid bytea "
           "PRIMARY KEY, decided_at bigint NOT NULL); then grant SELECT, INSERT, DELETE on it and USAGE on the "
           "schema), or set last_resource_commit = sqlite (only a SQLite branch commits last) or "
           "last_resource_commit = false";
  }
  decision_table_ = true;
  return "";
}

int PgsqlExtras::ReadDecisionRows(std::set<std::string>* out, const std::string* only, std::string* why) {
  PGconn* own;
  PGconn* c = FreeConnection(&own);
  std::string sql = "SELECT encode(gtrid, 'hex') FROM xatm.decision";
  if (only) sql += " WHERE gtrid = " + PgBytea(*only);
  PGresult* r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql.c_str()) : nullptr;
  int result = -1;
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i) {
      std::string g;
      if (rm::FromHex(PQgetvalue(r, i, 0), &g)) out->insert(std::move(g));
    }
    result = 0;
  } else if (NoDecisionTable(r)) {
    result = 0;  // no decision here
  } else {
    *why = PgMessage(c, r);
  }
  PQclear(r);
  if (own) PQfinish(own);
  return result;
}

// Inserting the same key waits for a transaction that inserted it and has
// not ended, then conflicts (it committed) or not (it never will): a commit
// in flight cannot slip past. Rolled back: nothing is written.
int PgsqlExtras::FencedDecisionRow(const std::string& gtrid, rm::FencedRead* /*pass*/, std::string* why) {
  PGconn* own;
  PGconn* c = FreeConnection(&own);
  int result = -1;
  if (PQstatus(c) != CONNECTION_OK) {
    *why = p_.name + ": " + PgMessage(c, nullptr);
  } else {
    const std::string sql = "BEGIN; SET LOCAL lock_timeout = '" + std::to_string(kFenceWaitMs) +
                            "ms'; INSERT INTO xatm.decision (gtrid, decided_at) VALUES (" + PgBytea(gtrid) +
                            ", 0) ON CONFLICT (gtrid) DO NOTHING RETURNING 1";
    if (PQsendQuery(c, sql.c_str())) {
      bool failed = false;
      while (PGresult* r = PQgetResult(c)) {
        const ExecStatusType st = PQresultStatus(r);
        if (failed) {
          // the statements after a failed one are not run
        } else if (st == PGRES_TUPLES_OK) {
          result = PQntuples(r) == 0 ? 1 : 0;  // no row inserted: the key is there, committed
        } else if (st != PGRES_COMMAND_OK) {
          failed = true;
          result = NoDecisionTable(r) ? 0 : -1;  // without the table no row was ever committed here
          if (result < 0) *why = p_.name + ": " + PgMessage(c, r);
        }
        PQclear(r);
      }
    } else {
      *why = p_.name + ": " + PgMessage(c, nullptr);
    }
    if (PQtransactionStatus(c) != PQTRANS_IDLE) PQclear(PQexec(c, "ROLLBACK"));
  }
  if (own) PQfinish(own);
  return result;
}

}  // namespace

std::unique_ptr<rm::RmExtras> MakeExtras(const rm::RmParams& params) {
  return std::make_unique<PgsqlExtras>(params);
}

}  // namespace xtm::pgsql
