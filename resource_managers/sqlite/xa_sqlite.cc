// The SQLite resource manager: an X/Open XA switch with a durable prepared
// state that SQLite itself does not have.
//
// Lifecycle of a branch on one connection (the thread's handle for rmid):
//
//  1. xa_start    BEGIN IMMEDIATE; the pre-update hook records every change
//                 to the main database (capture.h: the session extension's
//                 method and changeset format, set up once per connection);
//                 the authorizer
//                 refuses, at the statement, what a changeset cannot carry:
//                 DDL, ATTACH, writes to tables without a PRIMARY KEY, to
//                 virtual, temp or attached tables, and BEGIN/COMMIT/ROLLBACK.
//  2. xa_end      the association ends (TMFAIL rolls back at once).
//  3. xa_prepare  no deferred foreign-key violation may be pending and no row
//                 with a NULL key may have been written; a branch that
//                 changed nothing commits and votes XA_RDONLY. Otherwise the changeset is
//                 taken, a commit marker (a random token) is inserted inside
//                 the branch's transaction, and changeset, token, a digest of
//                 every touched row's full pre-image and a schema fingerprint
//                 are written to the sidecar database (FILE-xatm) with one
//                 sync.
//                 The main transaction stays open: its write lock protects the
//                 prepared data until phase two.
//       If we crash now: SQLite's journal rolls the main transaction back;
//       the sidecar record still says "prepared", xa_recover reports it,
//       and xa_commit replays it (step 5).
//  4. xa_commit   COMMIT of the open transaction (the marker commits with
//                 it), then the sidecar record is deleted, unforced.
//       If we crash between COMMIT and the delete: the record is still there,
//       but the marker in the main database says the branch committed, so a
//       later xa_commit only deletes the record: never applied twice.
//       If COMMIT itself fails and SQLite rolled back (disk full), the
//       branch falls back to the replay path, reporting XAER_RMFAIL until a
//       replay succeeds.
//  5. replay      (xa_commit of a branch whose transaction is gone) in one
//                 BEGIN IMMEDIATE transaction: marker present -> it committed;
//                 database replaced, schema changed, or any touched row
//                 changed in any column since prepare -> XA_HEURHAZ naming the
//                 table and key, the record kept; else the changeset is
//                 applied with triggers and foreign keys off (their effects
//                 are in it), aborting on any conflict, and committed
//                 together with the marker.
//       If we crash during a replay: its transaction rolls back, the record
//       remains, the next xa_commit replays again.
//
// Markers are deleted only after the sidecar delete they guard is durable
// (a sync of the sidecar while the main write lock is held), so a record that
// survives a crash always finds its marker.
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/branch.h"
#include "common/xid_util.h"
#include "sqlite/sqlite_rm.h"
#include "sqlite/capture.h"
#include "sqlite/sqlite_util.h"
#include "util/crash_point.h"
#include "xatm/rm_sqlite.h"

namespace xtm::sqlite {
namespace {

constexpr int kGcEvery = 1024;         // commits between marker garbage collections
constexpr int kCheckpointEvery = 128;  // commits between sidecar checkpoints
constexpr size_t kMaxDone = 64;        // committed records whose delete may wait

using rm::BranchState;

struct Options {
  std::string path;
  int busy_timeout_ms = 5000;
  bool readonly = false;  // for looking (xa_recover) only: nothing is written, not even at open
};

struct RmConn;
// Every open handle of the process, for AbortBranchOf.
std::mutex g_handles_mu;
std::map<sqlite3*, RmConn*> g_handles;

struct RmConn {
  int rmid = 0;
  Options opts;
  sqlite3* db = nullptr;    // the application's handle (xatm_sqlite_db)
  sqlite3* side = nullptr;  // the sidecar (synchronous=FULL: one sync per prepare)
  sqlite3* side_lazy = nullptr;  // the sidecar again, synchronous=OFF: unforced deletes
  sqlite3* aux = nullptr;   // replays while db is inside a branch
  std::string db_id;        // identity of the main database file

  BranchState state = BranchState::kNone;
  XID xid{};
  int rb_code = XA_RBROLLBACK;
  Capture capture;                                // the branch's changes (capture.h)
  std::map<std::string, uint64_t> null_key_rows;  // digest of NULL-key rows at xa_start
  std::string token;                              // marker of the prepared branch
  sqlite3_int64 changes_at_prepare = 0;           // sqlite3_total_changes64 after prepare
  // Committed branches whose sidecar records are still to be deleted: the
  // deletes ride along with the next prepare's sidecar write (or a flush).
  // Until then their markers say they committed.
  std::vector<XID> done;

  bool internal = false;  // the RM runs its own statements: the authorizer allows them
  // Every xid this handle starts is new (TrustFreshXids): xa_start does not
  // look for a prepared record with it.
  bool fresh_xids = false;
  // The handle is known to run with synchronous = FULL (or EXTRA): what the
  // TM commits on it (a decision row, a prepared branch whose sidecar record
  // is deleted afterwards) is durable when COMMIT returns. Cleared when the
  // application sets the pragma; checked again before the next branch.
  bool sync_full = false;
  std::atomic<bool> aborted{false};  // rolled back from another thread (AbortBranchOf)
  int schema_version = -1;
  uint64_t schema_fp = 0;
  std::map<std::string, TableInfo> tables;
  StmtCache main_stmts, side_stmts, lazy_stmts;

  rm::RecoverCursor scan;
  uint64_t commits = 0;

  ~RmConn() {
    if (db) {
      std::lock_guard<std::mutex> l(g_handles_mu);
      g_handles.erase(db);
    }
    main_stmts.Clear();
    side_stmts.Clear();
    lazy_stmts.Clear();
    if (aux) sqlite3_close_v2(aux);
    if (side_lazy) sqlite3_close_v2(side_lazy);
    if (side) sqlite3_close_v2(side);
    if (db) sqlite3_close_v2(db);
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

// Runs one statement kept in cache (BEGIN, COMMIT: prepared once, not at
// every transaction). SQLITE_OK or the error code.
int Run(StmtCache& cache, sqlite3* db, const std::string& sql) {
  StmtCache::Use st = cache.Get(db, sql);
  if (!st.ok()) return sqlite3_errcode(db);
  int r = st->Step();
  return r == SQLITE_DONE || r == SQLITE_ROW ? SQLITE_OK : sqlite3_extended_errcode(db);
}

// Runs the RM's own statements past the authorizer.
class Internal {
 public:
  explicit Internal(RmConn* rc) : rc_(rc), was_(rc->internal) { rc->internal = true; }
  ~Internal() { rc_->internal = was_; }

 private:
  RmConn* rc_;
  bool was_;
};

std::string Err(sqlite3* db) { return sqlite3_errmsg(db); }

// --------------------------------------------------------------------------
// Schema cache and the authorizer

bool RefreshSchema(RmConn* rc) {
  Internal in(rc);
  int version;
  {
    StmtCache::Use v = rc->main_stmts.Get(rc->db, "PRAGMA main.schema_version");
    if (!v.ok() || v->Step() != SQLITE_ROW) return false;
    version = static_cast<int>(v->Int(0));
  }
  if (version == rc->schema_version) return true;
  std::vector<std::pair<std::string, TableInfo>> tables;
  if (!ReadTables(rc->db, &tables)) return false;
  rc->tables.clear();
  for (auto& [name, info] : tables) rc->tables[name] = std::move(info);
  rc->main_stmts.Clear();
  rc->schema_version = version;
  rc->schema_fp = SchemaFingerprint(rc->db);
  return true;
}

bool InTransactionOfBranch(BranchState s) {
  return s == BranchState::kActive || s == BranchState::kSuspended || s == BranchState::kIdle;
}

int Deny(RmConn* rc, std::string why) {
  tls_errors[rc->rmid] = std::move(why);
  return SQLITE_DENY;
}

// Pragmas that would make commits on the handle non-durable, refused at any
// time: a checkpoint run without syncs can let the next writer overwrite
// committed frames (the TM's decision rows among them) that the database file
// does not hold yet.
int AuthorizeDurability(RmConn* rc, const char* pragma, const char* value) {
  std::string v = value;
  for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (sqlite3_stricmp(pragma, "synchronous") == 0) {
    if (v == "off" || v == "0" || v == "no" || v == "false") {  // what SQLite reads as OFF
      return Deny(rc, "PRAGMA synchronous = OFF on the SQLite RM's handle: a checkpoint would then copy committed "
                      "transactions, the TM's decisions among them, without a sync, and a power loss could lose "
                      "them; NORMAL or FULL are allowed (the RM raises it to FULL for its branches), or use another "
                      "connection for work that needs no durability");
    }
    rc->sync_full = false;
  } else if (sqlite3_stricmp(pragma, "journal_mode") == 0 && (v == "off" || v == "memory")) {
    return Deny(rc, "PRAGMA journal_mode = " + v + " on the SQLite RM's handle: a crash could then corrupt the "
                    "database and lose committed transactions; use WAL (recommended) or a rollback journal");
  }
  return SQLITE_OK;
}

int Authorize(void* ctx, int action, const char* a1, const char* a2, const char* dbname,
              const char* /*trigger*/) {
  auto* rc = static_cast<RmConn*>(ctx);
  if (rc->internal) return SQLITE_OK;
  if (action == SQLITE_PRAGMA && a1 != nullptr && a2 != nullptr) {
    if (int r = AuthorizeDurability(rc, a1, a2); r != SQLITE_OK) return r;
  }
  const bool in_branch = InTransactionOfBranch(rc->state);
  const bool prepared = rc->state == BranchState::kPrepared;
  if (!in_branch && !prepared) return SQLITE_OK;
  const std::string table = a1 ? a1 : "";
  switch (action) {
    case SQLITE_TRANSACTION:
      return Deny(rc, std::string(a1 ? a1 : "transaction control") +
                          " inside a global transaction: the TM commits or rolls back the branch");
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE: {
      if (prepared) {
        return Deny(rc, "the branch is prepared: no more writes on this handle until it is "
                        "committed or rolled back");
      }
      if (table == "sqlite_master" || table == "sqlite_temp_master" || table == "sqlite_schema" ||
          table == "sqlite_temp_schema") {
        return Deny(rc, "schema change (DDL) inside a global transaction: a changeset cannot carry "
                        "it; change the schema outside transactions");
      }
      if (dbname == nullptr || std::strcmp(dbname, "main") != 0) {
        return Deny(rc, "write to " + std::string(dbname ? dbname : "?") + "." + table +
                            ": only the main database takes part in the branch");
      }
      auto it = rc->tables.find(table);
      if (it == rc->tables.end()) return SQLITE_OK;  // SQLite reports what is wrong
      if (it->second.is_virtual) {
        return Deny(rc, "write to virtual table " + table +
                            ": its changes cannot be captured for a durable prepare");
      }
      if (!it->second.has_pk) {
        return Deny(rc, "write to table " + table +
                            ", which has no PRIMARY KEY: its changes cannot be captured for a "
                            "durable prepare (declare a PRIMARY KEY)");
      }
      return SQLITE_OK;
    }
    case SQLITE_CREATE_INDEX: case SQLITE_CREATE_TABLE: case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TABLE: case SQLITE_CREATE_TEMP_TRIGGER: case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_CREATE_TRIGGER: case SQLITE_CREATE_VIEW: case SQLITE_DROP_INDEX:
    case SQLITE_DROP_TABLE: case SQLITE_DROP_TEMP_INDEX: case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_DROP_TEMP_TRIGGER: case SQLITE_DROP_TEMP_VIEW: case SQLITE_DROP_TRIGGER:
    case SQLITE_DROP_VIEW: case SQLITE_ALTER_TABLE: case SQLITE_CREATE_VTABLE:
    case SQLITE_DROP_VTABLE: case SQLITE_ANALYZE:
      return Deny(rc, "schema change (DDL) inside a global transaction: a changeset cannot carry "
                      "it; change the schema outside transactions");
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
      return Deny(rc, "ATTACH/DETACH inside a global transaction");
    case SQLITE_PRAGMA: {
      static const std::set<std::string> kDenied = {
          "journal_mode", "writable_schema", "schema_version", "user_version", "application_id",
          "locking_mode", "foreign_keys", "recursive_triggers"};
      if (a2 != nullptr && kDenied.count(table)) {
        return Deny(rc, "PRAGMA " + table + " = ... inside a global transaction");
      }
      return SQLITE_OK;
    }
    default:
      return SQLITE_OK;
  }
}

// The authorizer judges a statement when it is prepared; statements the
// application keeps prepared are judged again when a branch starts and when
// it is prepared (RejudgeStatements). Three more checks stand behind it:
//  - the commit hook turns any COMMIT the application runs inside a branch
//    into a rollback of the branch (which then votes no, or is replayed from
//    its sidecar record if it was prepared);
//  - xa_prepare checks that the schema is unchanged, that every table the
//    branch wrote is one a changeset can carry, and that no other database
//    (temp, attached) was written;
//  - the commit of a prepared branch checks that nothing was written on the
//    handle since prepare; if something was, the transaction is rolled back
//    and the prepared changeset replayed instead.
int CommitHook(void* ctx) {
  auto* rc = static_cast<RmConn*>(ctx);
  if (rc->internal || rc->state == BranchState::kNone || rc->state == BranchState::kRollbackOnly) {
    return 0;
  }
  tls_errors[rc->rmid] = "COMMIT inside a global transaction was refused: the branch's "
                         "transaction was rolled back (leave COMMIT to the TM)";
  return 1;
}

// Every row change on the handle: captured while a branch records.
void PreUpdateHook(void* ctx, sqlite3* db, int op, const char* zdb, const char* table, sqlite3_int64,
                   sqlite3_int64) {
  auto* rc = static_cast<RmConn*>(ctx);
  if (!rc->capture.on() || std::strcmp(zdb, "main") != 0) return;
  // The RM's own rows (a last resource's decision row) are not the branch's
  // work: a changeset never carries them.
  if (rc->internal && std::strncmp(table, "xatm_", 5) == 0) return;
  auto t = rc->tables.find(table);
  rc->capture.OnPreUpdate(db, op, table, t == rc->tables.end() ? nullptr : &t->second);
}

void InstallGuards(RmConn* rc) {
  sqlite3_set_authorizer(rc->db, Authorize, rc);
  sqlite3_commit_hook(rc->db, CommitHook, rc);
  sqlite3_preupdate_hook(rc->db, PreUpdateHook, rc);
}

// Makes the application's prepared statements be judged again under the
// rules of the new state: (re)installing the authorizer expires every
// statement of the handle. Skipped when the application holds none, as when
// it runs its SQL with sqlite3_exec or finalizes its statements.
void RejudgeStatements(RmConn* rc) {
  for (sqlite3_stmt* st = sqlite3_next_stmt(rc->db, nullptr); st; st = sqlite3_next_stmt(rc->db, st)) {
    if (!rc->main_stmts.Owns(st)) {
      sqlite3_set_authorizer(rc->db, Authorize, rc);
      return;
    }
  }
}


// Digest of the rows of a table whose declared key has a NULL: the session
// extension silently skips such rows.
uint64_t NullKeyRows(RmConn* rc, const std::string& table) {
  const TableInfo& t = rc->tables[table];
  std::string where;
  for (size_t i = 0; i < t.columns.size(); ++i) {
    if (!t.pk[i]) continue;
    if (!where.empty()) where += " OR ";
    where += Ident(t.columns[i]) + " IS NULL";
  }
  Internal in(rc);
  Stmt st(rc->db, "SELECT * FROM main." + Ident(table) + " WHERE " + where + " ORDER BY rowid");
  Digest d;
  if (!st.ok()) return 0;
  while (st.Step() == SQLITE_ROW) {
    for (int i = 0; i < sqlite3_column_count(st.get()); ++i) d.AddColumn(st.get(), i);
  }
  return d.value();
}

// --------------------------------------------------------------------------
// The sidecar

const char kSidecarSchema[] =
    "CREATE TABLE IF NOT EXISTS prepared ("
    " format_id INTEGER NOT NULL, gtrid BLOB NOT NULL, bqual BLOB NOT NULL,"
    " token BLOB NOT NULL, db_id BLOB NOT NULL, schema_fp INTEGER NOT NULL,"
    " changeset BLOB NOT NULL, digests BLOB NOT NULL, prepared_at INTEGER NOT NULL,"
    " hazard TEXT,"
    " PRIMARY KEY (format_id, gtrid, bqual))";

struct Record {
  std::string token, db_id, changeset, digests, hazard;
  uint64_t schema_fp = 0;
};

// 1 found, 0 not found, -1 error.
int ReadRecord(RmConn* rc, const XID& x, Record* r) {
  StmtCache::Use st = r ? rc->side_stmts.Get(rc->side,
                                           "SELECT token, db_id, schema_fp, changeset, digests, "
                                           "coalesce(hazard, '') FROM prepared "
                                           "WHERE format_id = ?1 AND gtrid = ?2 AND bqual = ?3")
                       : rc->side_stmts.Get(rc->side,
                                           "SELECT 1 FROM prepared "
                                           "WHERE format_id = ?1 AND gtrid = ?2 AND bqual = ?3");
  if (!st.ok()) return -1;
  st->Bind(1, static_cast<int64_t>(x.formatID)).Bind(2, rm::Gtrid(x)).Bind(3, rm::Bqual(x));
  int s = st->Step();
  if (s == SQLITE_DONE) return 0;
  if (s != SQLITE_ROW) return -1;
  if (r) {
    r->token = st->Blob(0);
    r->db_id = st->Blob(1);
    r->schema_fp = static_cast<uint64_t>(st->Int(2));
    r->changeset = st->Blob(3);
    r->digests = st->Blob(4);
    r->hazard = st->Text(5);
  }
  return 1;
}

// Deletes a record without waiting for the disk: a delete lost in a crash
// leaves a record whose marker (or absence of work) says what to do.
void DeleteRecordUnforced(RmConn* rc, const XID& x) {
  StmtCache::Use st = rc->lazy_stmts.Get(
      rc->side_lazy, "DELETE FROM prepared WHERE format_id = ?1 AND gtrid = ?2 AND bqual = ?3");
  if (st.ok()) {
    st->Bind(1, static_cast<int64_t>(x.formatID)).Bind(2, rm::Gtrid(x)).Bind(3, rm::Bqual(x));
    st->Step();
  }
}

// Whether the main database holds the marker `token`: the branch committed.
// -1 on error. REQUIRES: db not inside a transaction of another thread's.
int MarkerExists(RmConn* rc, sqlite3* db, const std::string& token) {
  Internal in(rc);
  Stmt m(db, "SELECT 1 FROM main.xatm_marker WHERE token = ?1");
  if (!m.ok()) return -1;
  m.Bind(1, token);
  int s = m.Step();
  return s == SQLITE_ROW ? 1 : s == SQLITE_DONE ? 0 : -1;
}

// Deletes the records of committed branches now, unforced.
void FlushDone(RmConn* rc) {
  if (rc->done.empty() || rc->side_lazy == nullptr) return;
  ExecSql(rc->side_lazy, "BEGIN IMMEDIATE");
  for (const XID& x : rc->done) DeleteRecordUnforced(rc, x);
  if (ExecSql(rc->side_lazy, "COMMIT") == SQLITE_OK) {
    rc->done.clear();
  } else {
    ExecSql(rc->side_lazy, "ROLLBACK");
  }
}

void SetHazard(RmConn* rc, const XID& x, const std::string& why) {
  Stmt st(rc->side, "UPDATE prepared SET hazard = ?4 WHERE format_id = ?1 AND gtrid = ?2 AND bqual = ?3");
  if (!st.ok()) return;
  st.Bind(1, static_cast<int64_t>(x.formatID)).Bind(2, rm::Gtrid(x)).Bind(3, rm::Bqual(x)).BindText(4, why);
  st.Step();
}

// Makes every earlier write to the sidecar durable, from any process: a
// forced write syncs the whole WAL file.
bool SidecarBarrier(RmConn* rc) {
  return ExecSql(rc->side, "BEGIN IMMEDIATE; "
                           "INSERT OR REPLACE INTO barrier VALUES (1, strftime('%s','now')); COMMIT") ==
         SQLITE_OK;
}

// Deletes the commit markers whose sidecar records are gone for good.
// Best effort: skipped if the write lock is not free.
void CollectMarkers(RmConn* rc) {
  FlushDone(rc);
  Internal in(rc);
  sqlite3_busy_timeout(rc->db, 0);
  bool locked = ExecSql(rc->db, "BEGIN IMMEDIATE") == SQLITE_OK;
  sqlite3_busy_timeout(rc->db, rc->opts.busy_timeout_ms);
  if (!locked) return;
  // No branch can prepare while we hold the write lock; every record deleted
  // before the barrier is durably gone after it.
  std::set<std::string> live;
  bool ok = SidecarBarrier(rc);
  if (ok) {
    Stmt st(rc->side, "SELECT token FROM prepared");
    ok = st.ok();
    while (ok && st.Step() == SQLITE_ROW) live.insert(st.Blob(0));
  }
  if (ok) {
    std::vector<std::string> dead;
    {
      Stmt st(rc->db, "SELECT token FROM main.xatm_marker");
      while (st.ok() && st.Step() == SQLITE_ROW) {
        std::string t = st.Blob(0);
        if (!live.count(t)) dead.push_back(std::move(t));
      }
    }
    Stmt del(rc->db, "DELETE FROM main.xatm_marker WHERE token = ?1");
    for (const std::string& t : dead) {
      del.Bind(1, t);
      del.Step();
      del.Reset();
    }
  }
  ExecSql(rc->db, ok ? "COMMIT" : "ROLLBACK");
  ExecSql(rc->side, "PRAGMA wal_checkpoint(PASSIVE)");
}

int InsertMarker(sqlite3* db, StmtCache* cache, const std::string& token, int64_t at) {
  const char* sql = "INSERT INTO main.xatm_marker (token, prepared_at) VALUES (?1, ?2)";
  std::unique_ptr<Stmt> own;
  Stmt* st = cache ? cache->GetRaw(db, sql) : (own = std::make_unique<Stmt>(db, sql)).get();
  if (!st->ok()) return SQLITE_ERROR;
  int rc = st->Bind(1, token).Bind(2, at).Step();
  st->Reset();
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

// --------------------------------------------------------------------------
// Changeset digests

// Reads the row of `table` whose key is given by value(i) for key columns;
// calls on_row with the statement positioned on it. 1 found, 0 absent, -1 error.
template <typename KeyValue, typename OnRow>
int ReadRow(sqlite3* db, StmtCache* cache, const std::string& table, const TableInfo& t,
            KeyValue value, OnRow on_row) {
  std::string sql = "SELECT ";
  for (size_t i = 0; i < t.columns.size(); ++i) sql += (i ? ", " : "") + Ident(t.columns[i]);
  sql += " FROM main." + Ident(table) + " WHERE ";
  int n = 0;
  for (size_t i = 0; i < t.columns.size(); ++i) {
    if (!t.pk[i]) continue;
    sql += (n ? " AND " : "") + Ident(t.columns[i]) + " = ?" + std::to_string(n + 1);
    ++n;
  }
  std::unique_ptr<Stmt> own;
  Stmt* st;
  if (cache) {
    st = cache->GetRaw(db, sql);
  } else {
    own = std::make_unique<Stmt>(db, sql);
    st = own.get();
  }
  if (!st->ok()) return -1;
  struct ResetAfter {
    Stmt* s;
    ~ResetAfter() { s->Reset(); }
  } reset_after{st};
  n = 0;
  for (size_t i = 0; i < t.columns.size(); ++i) {
    if (t.pk[i]) st->BindValue(++n, value(static_cast<int>(i)));
  }
  int s = st->Step();
  if (s == SQLITE_DONE) return 0;
  if (s != SQLITE_ROW) return -1;
  on_row(st->get());
  return 1;
}

// The current change of a changeset iterator: its table, column count,
// operation, and which columns make the primary key.
struct Change {
  const char* tab;
  int ncol;
  int op;
  const unsigned char* pk;

  static Change Of(sqlite3_changeset_iter* it) {
    Change c{};
    int indirect, npk;
    unsigned char* pk = nullptr;
    sqlite3changeset_op(it, &c.tab, &c.ncol, &c.op, &indirect);
    sqlite3changeset_pk(it, &pk, &npk);
    c.pk = pk;
    return c;
  }
};

// The key of the current change, for messages: "(1, 'abc')".
std::string KeyText(sqlite3_changeset_iter* it, int ncol, int op, const unsigned char* pk) {
  std::string s = "(";
  bool first = true;
  for (int i = 0; i < ncol; ++i) {
    if (!pk[i]) continue;
    sqlite3_value* v = nullptr;
    if (op == SQLITE_INSERT) sqlite3changeset_new(it, i, &v);
    else sqlite3changeset_old(it, i, &v);
    if (!first) s += ", ";
    first = false;
    if (v == nullptr) { s += "?"; continue; }
    const unsigned char* t = sqlite3_value_text(v);
    s += sqlite3_value_type(v) == SQLITE_TEXT ? "'" + std::string(reinterpret_cast<const char*>(t)) + "'"
                                              : std::string(t ? reinterpret_cast<const char*>(t) : "NULL");
  }
  return s + ")";
}

// At replay: every touched row must still be as it was before the branch.
// Empty string if so, else what differs. REQUIRES: inside the replay's
// transaction on db.
std::string VerifyPreImages(RmConn* rc, sqlite3* db, const Record& r) {
  std::map<std::string, TableInfo> tables;
  {
    std::vector<std::pair<std::string, TableInfo>> v;
    if (!ReadTables(db, &v)) return "cannot read the schema";
    for (auto& [n, t] : v) tables[n] = std::move(t);
  }
  sqlite3_changeset_iter* it = nullptr;
  if (sqlite3changeset_start(&it, static_cast<int>(r.changeset.size()),
                             const_cast<char*>(r.changeset.data())) != SQLITE_OK) {
    return "the stored changeset does not parse";
  }
  std::string problem;
  size_t k = 0;
  Internal in(rc);
  while (problem.empty() && sqlite3changeset_next(it) == SQLITE_ROW) {
    const auto [tab, ncol, op, pk] = Change::Of(it);
    auto t = tables.find(tab);
    if (t == tables.end() || static_cast<int>(t->second.columns.size()) != ncol) {
      problem = std::string("table ") + tab + " no longer exists as it was";
      break;
    }
    uint64_t want = 0;
    if ((k + 1) * 8 <= r.digests.size()) std::memcpy(&want, r.digests.data() + k * 8, 8);
    ++k;
    if (op == SQLITE_INSERT) {
      int found = ReadRow(db, nullptr, tab, t->second,
                          [&](int i) { sqlite3_value* v; sqlite3changeset_new(it, i, &v); return v; },
                          [](sqlite3_stmt*) {});
      if (found != 0) problem = std::string("a row with key ") + KeyText(it, ncol, op, pk) + " now exists in " + tab;
      continue;
    }
    Digest d;
    int found = ReadRow(db, nullptr, tab, t->second,
                        [&](int i) { sqlite3_value* v; sqlite3changeset_old(it, i, &v); return v; },
                        [&](sqlite3_stmt* st) {
                          for (int i = 0; i < ncol; ++i) d.AddColumn(st, i);
                        });
    if (found == 0) {
      problem = std::string("row ") + KeyText(it, ncol, op, pk) + " of " + tab + " was deleted since prepare";
    } else if (found < 0) {
      problem = std::string("cannot read row ") + KeyText(it, ncol, op, pk) + " of " + tab;
    } else if (d.value() != want) {
      problem = std::string("row ") + KeyText(it, ncol, op, pk) + " of " + tab + " was changed since prepare";
    }
  }
  sqlite3changeset_finalize(it);
  return problem;
}

// --------------------------------------------------------------------------

int RollbackCodeOf(int sqlite_rc) {
  switch (sqlite_rc & 0xff) {
    case SQLITE_CONSTRAINT: return XA_RBINTEGRITY;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return XA_RBDEADLOCK;
    default: return XA_RBOTHER;
  }
}

void EndSession(RmConn* rc) {
  rc->capture.Clear();
  rc->null_key_rows.clear();
}

// Drops the branch of rc, rolling back its transaction if one is open.
void ForgetBranch(RmConn* rc) {
  Internal in(rc);
  if (!sqlite3_get_autocommit(rc->db)) ExecSql(rc->db, "ROLLBACK");
  EndSession(rc);
  rc->state = BranchState::kNone;
  std::memset(&rc->xid, 0, sizeof rc->xid);
  rc->token.clear();
}

int MarkRollbackOnly(RmConn* rc, int code, std::string why) {
  {
    Internal in(rc);
    if (!sqlite3_get_autocommit(rc->db)) ExecSql(rc->db, "ROLLBACK");
  }
  EndSession(rc);
  rc->state = BranchState::kRollbackOnly;
  rc->rb_code = code;
  return Fail(rc->rmid, code, std::move(why));
}

bool Mine(const RmConn* rc, const XID* xid) {
  return rc->state != BranchState::kNone && rm::XidEqual(rc->xid, *xid);
}

int Enter(int rmid, long flags, long allowed, RmConn** rc, bool writes = true) {
  if (flags & TMASYNC) return Fail(rmid, XAER_ASYNC, "asynchronous XA calls are not supported");
  if (flags & ~allowed) return Fail(rmid, XAER_INVAL, "unsupported flags for this call");
  *rc = Find(rmid);
  if (*rc == nullptr) {
    return Fail(rmid, XAER_PROTO, "xa_open was not called for rmid " + std::to_string(rmid) +
                                      " on this thread");
  }
  if (writes && (*rc)->opts.readonly) return Fail(rmid, XAER_RMERR, "opened read-only (readonly=1)");
  return XA_OK;
}

// The connection for a replay: the handle itself unless it is inside a
// branch, else a second connection of the RM's own.
sqlite3* ReplayConnection(RmConn* rc) {
  if (rc->state == BranchState::kNone || rc->state == BranchState::kRollbackOnly) return rc->db;
  if (rc->aux == nullptr) {
    if (sqlite3_open_v2(rc->opts.path.c_str(), &rc->aux, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      sqlite3_close_v2(rc->aux);
      rc->aux = nullptr;
      return nullptr;
    }
    sqlite3_busy_timeout(rc->aux, rc->opts.busy_timeout_ms);
  }
  return rc->aux;
}

struct ApplyContext {
  std::string conflict;
};

// Called as the replay starts on each table: a place to crash mid-apply.
int OnApplyTable(void*, const char*) {
  XATM_CRASH_POINT("sqlite.replay.apply_table");
  return 1;
}

int OnConflict(void* ctx, int type, sqlite3_changeset_iter* it) {
  auto* a = static_cast<ApplyContext*>(ctx);
  const auto [tab, ncol, op, pk] = Change::Of(it);
  const char* what = type == SQLITE_CHANGESET_DATA        ? "the row differs"
                     : type == SQLITE_CHANGESET_NOTFOUND  ? "the row is missing"
                     : type == SQLITE_CHANGESET_CONFLICT  ? "the row already exists"
                     : type == SQLITE_CHANGESET_CONSTRAINT ? "a constraint fails"
                                                          : "a foreign key fails";
  if (a->conflict.empty()) {
    a->conflict = std::string("applying to ") + tab + " " + KeyText(it, ncol, op, pk) + ": " + what;
  }
  return SQLITE_CHANGESET_ABORT;
}

// Commits a prepared branch whose transaction is gone, from its sidecar record.
int Replay(RmConn* rc, const XID& xid) {
  Record r;
  int found = ReadRecord(rc, xid, &r);
  if (found < 0) return Fail(rc->rmid, XAER_RMERR, "cannot read the sidecar: " + Err(rc->side));
  if (found == 0) return Fail(rc->rmid, XAER_NOTA, "no prepared branch with this XID");
  if (r.db_id != rc->db_id) {
    std::string why = "the prepared branch belongs to another database file (" +
                      rm::Hex(r.db_id) + "); " + rc->opts.path + " is " + rm::Hex(rc->db_id) +
                      ": the file was replaced, nothing was applied";
    SetHazard(rc, xid, why);
    return Fail(rc->rmid, XA_HEURHAZ, why);
  }
  sqlite3* db = ReplayConnection(rc);
  if (db == nullptr) return Fail(rc->rmid, XAER_RMFAIL, "cannot open " + rc->opts.path);
  Internal in(rc);
  // Triggers and foreign-key actions already did their work in the branch:
  // the changeset holds their effects.
  int fk = 0, trig = 0;
  {
    Stmt st(db, "PRAGMA foreign_keys");
    if (st.ok() && st.Step() == SQLITE_ROW) fk = static_cast<int>(st.Int(0));
  }
  ExecSql(db, "PRAGMA foreign_keys = OFF");
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, &trig);
  auto restore = [&] {
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, trig, nullptr);
    if (fk) ExecSql(db, "PRAGMA foreign_keys = ON");
  };
  int brc = ExecSql(db, "BEGIN IMMEDIATE");
  if (brc != SQLITE_OK) {
    restore();
    return Fail(rc->rmid, (brc & 0xff) == SQLITE_BUSY ? XA_RETRY : XAER_RMFAIL,
                "cannot lock " + rc->opts.path + " for the recovery commit (" + Err(db) +
                    "); a live process may still hold the branch prepared");
  }
  auto give_up = [&](int code, const std::string& why) {
    ExecSql(db, "ROLLBACK");
    restore();
    if (code == XA_HEURHAZ) SetHazard(rc, xid, why);
    return Fail(rc->rmid, code, why);
  };
  {
    Stmt m(db, "SELECT 1 FROM main.xatm_marker WHERE token = ?1");
    if (!m.ok()) return give_up(XAER_RMERR, "cannot read the commit markers: " + Err(db));
    m.Bind(1, r.token);
    if (m.Step() == SQLITE_ROW) {
      // Committed before: only the sidecar delete was lost.
      ExecSql(db, "ROLLBACK");
      restore();
      DeleteRecordUnforced(rc, xid);
      return XA_OK;
    }
  }
  if (SchemaFingerprint(db) != r.schema_fp) {
    return give_up(XA_HEURHAZ, "the schema of " + rc->opts.path +
                                   " changed since the branch was prepared; nothing was applied");
  }
  std::string changed = VerifyPreImages(rc, db, r);
  if (!changed.empty()) {
    return give_up(XA_HEURHAZ, changed + " (outside the branch); nothing was applied, the branch "
                                         "stays prepared for a decision");
  }
  ApplyContext ctx;
  int arc = sqlite3changeset_apply(db, static_cast<int>(r.changeset.size()), r.changeset.data(),
                                   OnApplyTable, OnConflict, &ctx);
  if (arc != SQLITE_OK) {
    if (!ctx.conflict.empty()) return give_up(XA_HEURHAZ, ctx.conflict + "; nothing was applied");
    return give_up(XAER_RMFAIL, "applying the prepared changeset failed: " + Err(db));
  }
  if (InsertMarker(db, nullptr, r.token, static_cast<int64_t>(std::time(nullptr))) != SQLITE_OK) {
    return give_up(XAER_RMFAIL, "cannot write the commit marker: " + Err(db));
  }
  if (ExecSql(db, "COMMIT") != SQLITE_OK) {
    std::string e = Err(db);
    if (!sqlite3_get_autocommit(db)) ExecSql(db, "ROLLBACK");
    restore();
    return Fail(rc->rmid, XAER_RMFAIL, "the recovery commit failed: " + e);
  }
  restore();
  DeleteRecordUnforced(rc, xid);
  return XA_OK;
}

bool ParseInfo(const char* info, Options* o, std::string* why) {
  std::string s = info;
  size_t i = 0;
  bool have_path = false;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    if (i >= s.size()) break;
    size_t j = s.find(' ', i);
    std::string kv = s.substr(i, j == std::string::npos ? std::string::npos : j - i);
    i = j == std::string::npos ? s.size() : j;
    size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      *why = "xa_info: \"" + kv + "\" is not key=value";
      return false;
    }
    std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (k == "path") {
      o->path = v;
      have_path = !v.empty();
    } else if (k == "readonly") {
      if (v != "0" && v != "1") {
        *why = "xa_info: readonly must be 0 or 1";
        return false;
      }
      o->readonly = v == "1";
    } else if (k == "busy_timeout_ms") {
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 0 || n > 3600000) {
        *why = "xa_info: busy_timeout_ms must be a number of milliseconds, not \"" + v + "\"";
        return false;
      }
      o->busy_timeout_ms = static_cast<int>(n);
    } else {
      *why = "xa_info: unknown option \"" + k + "\" (known: path, busy_timeout_ms, readonly)";
      return false;
    }
  }
  if (!have_path) {
    *why = "xa_info must name the database: path=FILE [busy_timeout_ms=N]";
    return false;
  }
  return true;
}

// --------------------------------------------------------------------------
// The switch

// Opens for looking only: the main database and the sidecar read-only (an
// absent sidecar is an empty one), no table created, no marker collected.
int OpenReadOnly(std::unique_ptr<RmConn> rc, int rmid) {
  const std::string& path = rc->opts.path;
  if (sqlite3_open_v2(path.c_str(), &rc->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
    return Fail(rmid, XAER_RMERR, "cannot open SQLite database " + path + " read-only: " + Err(rc->db));
  }
  sqlite3_busy_timeout(rc->db, rc->opts.busy_timeout_ms);
  {
    Stmt id(rc->db, "SELECT value FROM main.xatm_meta WHERE key = 'db_id'");
    if (id.ok() && id.Step() == SQLITE_ROW) rc->db_id = id.Blob(0);
  }
  const std::string side = SidecarPath(path);
  const bool exists = ::access(side.c_str(), F_OK) == 0;
  if (sqlite3_open_v2(exists ? side.c_str() : ":memory:", &rc->side,
                      exists ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK ||
      (!exists && ExecSql(rc->side, kSidecarSchema) != SQLITE_OK)) {
    return Fail(rmid, XAER_RMERR, "cannot open the sidecar " + side + " read-only: " + Err(rc->side));
  }
  sqlite3_busy_timeout(rc->side, rc->opts.busy_timeout_ms);
  if (!RefreshSchema(rc.get())) return Fail(rmid, XAER_RMERR, "cannot read the schema of " + path);
  tls_conns[rmid] = std::move(rc);
  tls_errors.erase(rmid);
  return XA_OK;
}

int SqOpen(char* info, int rmid, long flags) {
  if (flags & TMASYNC) return Fail(rmid, XAER_ASYNC, "asynchronous XA calls are not supported");
  if (flags != TMNOFLAGS) return Fail(rmid, XAER_INVAL, "xa_open takes no flags");
  if (info == nullptr) return Fail(rmid, XAER_INVAL, "xa_info is NULL: give path=FILE");
  if (Find(rmid) != nullptr) return XA_OK;
  auto rc = std::make_unique<RmConn>();
  rc->rmid = rmid;
  std::string why;
  if (!ParseInfo(info, &rc->opts, &why)) return Fail(rmid, XAER_INVAL, why);
  if (rc->opts.readonly) return OpenReadOnly(std::move(rc), rmid);
  const std::string& path = rc->opts.path;
  // Never created here: a mistyped or wrongly relative path would otherwise
  // get an empty database, in which "no decision row" would look like a
  // decision to roll back the branches the real file decided to commit.
  if (::access(path.c_str(), F_OK) != 0) {
    return Fail(rmid, XAER_RMERR,
                "SQLite database " + path + " does not exist; the SQLite RM never creates one (an empty file "
                "would hide the decisions of the real one): check the path, or create the database first "
                "(sqlite3 " + path + " 'PRAGMA journal_mode=WAL')");
  }
  if (sqlite3_open_v2(path.c_str(), &rc->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
    return Fail(rmid, XAER_RMERR, "cannot open SQLite database " + path + ": " + Err(rc->db));
  }
  sqlite3_extended_result_codes(rc->db, 1);
  sqlite3_busy_timeout(rc->db, rc->opts.busy_timeout_ms);
  // The RM's own tables in the main database: its identity and the commit
  // markers. Created once, outside any branch.
  std::string notice;
  {
    Internal in(rc.get());
    // Usually the tables exist: then a read is enough, and opening never
    // waits for another connection's write lock (a prepared branch holds it).
    bool ready = false;
    {
      Stmt have(rc->db,
                "SELECT (SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name IN "
                "('xatm_meta', 'xatm_marker', 'xatm_decision')) = 3 AND "
                "EXISTS (SELECT 1 FROM main.xatm_meta WHERE key = 'db_id')");
      ready = have.ok() && have.Step() == SQLITE_ROW && sqlite3_column_int(have.get(), 0) == 1;
    }
    if (!ready && ExecSql(rc->db, "BEGIN IMMEDIATE;"
                        "CREATE TABLE IF NOT EXISTS main.xatm_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
                        "CREATE TABLE IF NOT EXISTS main.xatm_marker (token BLOB PRIMARY KEY NOT NULL, prepared_at INTEGER NOT NULL) WITHOUT ROWID;"
                        "CREATE TABLE IF NOT EXISTS main.xatm_decision (gtrid BLOB PRIMARY KEY NOT NULL, decided_at INTEGER NOT NULL) WITHOUT ROWID;"
                        "INSERT OR IGNORE INTO main.xatm_meta VALUES ('db_id', randomblob(16));"
                        "COMMIT") != SQLITE_OK) {
      std::string e = Err(rc->db);
      ExecSql(rc->db, "ROLLBACK");
      return Fail(rmid, XAER_RMERR, "cannot prepare " + path + " for xatm: " + e);
    }
    Stmt id(rc->db, "SELECT value FROM main.xatm_meta WHERE key = 'db_id'");
    if (!id.ok() || id.Step() != SQLITE_ROW) return Fail(rmid, XAER_RMERR, "cannot read the database id of " + path);
    rc->db_id = id.Blob(0);
    Stmt jm(rc->db, "PRAGMA main.journal_mode");
    if (jm.ok() && jm.Step() == SQLITE_ROW && jm.Text(0) != "wal") {
      notice = "notice: " + path + " is in " + jm.Text(0) +
               " journal mode; WAL is recommended (PRAGMA journal_mode=WAL): in rollback mode a "
               "prepared branch can block readers until it is committed";
    }
  }
  const std::string side = SidecarPath(path);
  if (sqlite3_open_v2(side.c_str(), &rc->side, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    return Fail(rmid, XAER_RMERR, "cannot open the sidecar " + side + ": " + Err(rc->side));
  }
  sqlite3_busy_timeout(rc->side, rc->opts.busy_timeout_ms);
  // One fsync per prepare: WAL, synchronous=FULL, checkpoints by the RM only.
  // A new sidecar gets 1 KiB pages: a record usually fits in one, and each
  // WAL frame written, checksummed and synced is a page (an existing sidecar
  // keeps its page size; WAL mode fixes it).
  if (ExecSql(rc->side, "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                        "PRAGMA wal_autocheckpoint = 0") != SQLITE_OK ||
      ExecSql(rc->side, std::string(kSidecarSchema) +
                            "; CREATE TABLE IF NOT EXISTS barrier (id INTEGER PRIMARY KEY, at INTEGER)") != SQLITE_OK) {
    return Fail(rmid, XAER_RMERR, "cannot set up the sidecar " + side + ": " + Err(rc->side));
  }
  // synchronous = OFF: its deletes need no sync. It never checkpoints (nor at
  // close), which would copy frames into the sidecar without a sync and let
  // the WAL be overwritten over records whose only copy is there.
  if (sqlite3_open_v2(side.c_str(), &rc->side_lazy, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK ||
      sqlite3_db_config(rc->side_lazy, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr) != SQLITE_OK ||
      ExecSql(rc->side_lazy, "PRAGMA synchronous = OFF; PRAGMA wal_autocheckpoint = 0") != SQLITE_OK) {
    return Fail(rmid, XAER_RMERR, "cannot open the sidecar " + side + ": " + Err(rc->side_lazy));
  }
  sqlite3_busy_timeout(rc->side_lazy, rc->opts.busy_timeout_ms);
  if (!RefreshSchema(rc.get())) return Fail(rmid, XAER_RMERR, "cannot read the schema of " + path);
  InstallGuards(rc.get());
  CollectMarkers(rc.get());
  {
    std::lock_guard<std::mutex> l(g_handles_mu);
    g_handles[rc->db] = rc.get();
  }
  tls_conns[rmid] = std::move(rc);
  tls_errors[rmid] = notice;
  return XA_OK;
}

int SqClose(char*, int rmid, long flags) {
  if (flags & TMASYNC) return Fail(rmid, XAER_ASYNC, "asynchronous XA calls are not supported");
  RmConn* rc = Find(rmid);
  if (rc == nullptr) return XA_OK;
  if (InTransactionOfBranch(rc->state)) {
    return Fail(rmid, XAER_PROTO, "branch " + rm::XidToString(rc->xid) +
                                      " is still open on this handle: end and finish it first");
  }
  // A prepared branch outlives the handle: its transaction rolls back with the
  // connection, and its sidecar record is committed later by replay.
  FlushDone(rc);
  tls_conns.erase(rmid);
  return XA_OK;
}

int SqStart(XID* xid, int rmid, long flags) {
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
  if (!rc->fresh_xids) {
    Record old;
    int exists = ReadRecord(rc, *xid, &old);
    if (exists < 0) return Fail(rmid, XAER_RMERR, "cannot read the sidecar: " + Err(rc->side));
    if (exists == 1) {
      if (MarkerExists(rc, rc->db, old.token) != 1) {
        return Fail(rmid, XAER_DUPID, "a prepared branch with this XID exists");
      }
      // A committed branch whose record was not deleted yet: the XID is free.
      DeleteRecordUnforced(rc, *xid);
    }
  }
  if (!sqlite3_get_autocommit(rc->db)) {
    return Fail(rmid, XAER_OUTSIDE,
                "the handle is inside a transaction the TM did not start: commit or roll it back");
  }
  {
    Internal in(rc);
    // What the TM commits on the handle must be durable when COMMIT returns,
    // whatever the application set (NORMAL syncs nothing at a WAL commit).
    // Outside a transaction: SQLite refuses the pragma inside one.
    if (!rc->sync_full) {
      StmtCache::Use level = rc->main_stmts.Get(rc->db, "PRAGMA main.synchronous");
      const bool full = level.ok() && level->Step() == SQLITE_ROW && level->Int(0) >= 2;
      if (!full && Run(rc->main_stmts, rc->db, "PRAGMA main.synchronous = FULL") != SQLITE_OK) {
        return Fail(rmid, XAER_RMERR, "cannot set synchronous = FULL on " + rc->opts.path + ": " + Err(rc->db));
      }
      rc->sync_full = true;
    }
    int brc = Run(rc->main_stmts, rc->db, "BEGIN IMMEDIATE");
    if (brc != SQLITE_OK) {
      return Fail(rmid, XAER_RMERR, "cannot begin the branch on " + rc->opts.path + ": " + Err(rc->db) +
                                        ((brc & 0xff) == SQLITE_BUSY
                                             ? " (another writer held the database longer than busy_timeout_ms)"
                                             : ""));
    }
    // The schema is read inside the write transaction: no other writer can
    // change it before the branch ends, and no read transaction of its own
    // is needed.
    if (!RefreshSchema(rc)) {
      std::string e = Err(rc->db);
      ExecSql(rc->db, "ROLLBACK");
      return Fail(rmid, XAER_RMERR, "cannot read the schema: " + e);
    }
  }
  rc->capture.Begin();
  for (const auto& [name, t] : rc->tables) {
    if (t.nullable_pk && name.rfind("xatm_", 0) != 0) rc->null_key_rows[name] = NullKeyRows(rc, name);
  }
  rc->state = BranchState::kActive;
  rc->xid = *xid;
  rc->rb_code = XA_RBROLLBACK;
  rc->aborted = false;
  RejudgeStatements(rc);
  return XA_OK;
}

int SqEnd(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMSUCCESS | TMFAIL | TMSUSPEND | TMMIGRATE, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  long kind;
  if (rm::Verdict v = rm::End(&rc->state, Mine(rc, xid), flags, &kind); v.code != XA_OK) {
    return Fail(rmid, v.code, v.why);
  }
  if (kind == TMSUSPEND) return XA_OK;
  if (kind == TMFAIL) return MarkRollbackOnly(rc, XA_RBROLLBACK, "the branch was ended with TMFAIL");
  if (rc->aborted) {
    return MarkRollbackOnly(rc, XA_RBTIMEOUT, "the branch outlived its timeout and was rolled back");
  }
  if (sqlite3_get_autocommit(rc->db)) {
    // SQLite rolled the transaction back by itself (disk full, I/O error).
    return MarkRollbackOnly(rc, XA_RBOTHER, "SQLite rolled the branch's transaction back (an error "
                                            "such as a full disk ends a transaction)");
  }
  rc->state = BranchState::kIdle;
  return XA_OK;
}

// Checks shared by prepare and one-phase commit: 0 or the XA_RB* vote.
int CheckCommittable(RmConn* rc) {
  if (rc->aborted) {
    return MarkRollbackOnly(rc, XA_RBTIMEOUT, "the branch outlived its timeout and was rolled back");
  }
  if (sqlite3_get_autocommit(rc->db)) {
    return MarkRollbackOnly(rc, XA_RBOTHER, "SQLite rolled the branch's transaction back");
  }
  int cur = 0, hi = 0;
  sqlite3_db_status(rc->db, SQLITE_DBSTATUS_DEFERRED_FKS, &cur, &hi, 0);
  if (cur > 0) {
    return MarkRollbackOnly(rc, XA_RBINTEGRITY,
                            std::to_string(cur) + " deferred foreign key violation(s) are pending");
  }
  {
    Internal in(rc);
    StmtCache::Use v = rc->main_stmts.Get(rc->db, "PRAGMA main.schema_version");
    if (!v.ok() || v->Step() != SQLITE_ROW || static_cast<int>(v->Int(0)) != rc->schema_version) {
      return MarkRollbackOnly(rc, XA_RBOTHER, "the schema changed inside the branch (DDL); a changeset "
                                              "cannot carry it");
    }
  }
  for (const std::string& table : rc->capture.touched()) {
    auto t = rc->tables.find(table);
    if (t != rc->tables.end() && !t->second.has_pk) {
      return MarkRollbackOnly(rc, XA_RBOTHER, "table " + table + ", which has no PRIMARY KEY, was "
                                              "written: its changes cannot be captured");
    }
    for (const auto& [vname, vt] : rc->tables) {
      if (vt.is_virtual && table.size() > vname.size() && table.compare(0, vname.size() + 1, vname + "_") == 0) {
        return MarkRollbackOnly(rc, XA_RBOTHER, "virtual table " + vname + " was written (through " +
                                                    table + "): its changes cannot be replayed");
      }
    }
  }
  for (const std::string& table : rc->capture.touched()) {
    auto base = rc->null_key_rows.find(table);
    if (base != rc->null_key_rows.end() && NullKeyRows(rc, table) != base->second) {
      return MarkRollbackOnly(rc, XA_RBINTEGRITY,
                              "table " + table + ": a row with a NULL primary key value was written; "
                              "a changeset cannot carry it (make the key columns NOT NULL)");
    }
  }
  return 0;
}

int SqPrepare(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, 0, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  if (!Mine(rc, xid)) {
    if (ReadRecord(rc, *xid, nullptr) == 1) return Fail(rmid, XAER_PROTO, "the branch is already prepared");
    return Fail(rmid, XAER_NOTA, "no such branch on this handle");
  }
  switch (rc->state) {
    case BranchState::kActive:
    case BranchState::kSuspended:
      return Fail(rmid, XAER_PROTO, "the branch must be ended (xa_end) before it is prepared");
    case BranchState::kPrepared:
      return Fail(rmid, XAER_PROTO, "the branch is already prepared");
    case BranchState::kRollbackOnly: {
      int code = rc->rb_code;
      ForgetBranch(rc);
      return Fail(rmid, code, "the branch is rollback-only and was rolled back");
    }
    default:
      break;
  }
  if (int vote = CheckCommittable(rc); vote != 0) {
    ForgetBranch(rc);
    return vote;
  }
  Internal in(rc);
  if (rc->capture.empty() && rc->capture.problem().empty()) {
    // Read-only: nothing to make durable; the lock goes now.
    int c = Run(rc->main_stmts, rc->db, "COMMIT");
    if (c != SQLITE_OK) {
      ForgetBranch(rc);
      return Fail(rmid, XA_RBOTHER, "read-only branch failed to commit: " + Err(rc->db));
    }
    ForgetBranch(rc);
    return XA_RDONLY;
  }
  // The changeset and each changed row's full pre-image digest, read while
  // the branch's transaction is still open.
  std::string changeset, digests, capture_why;
  if (!rc->capture.Changeset(rc->db, &rc->main_stmts, &changeset, &digests, &capture_why)) {
    ForgetBranch(rc);
    return Fail(rmid, XA_RBOTHER, "cannot take the branch's changeset: " + capture_why);
  }
  // The commit marker, inside the branch's transaction (but not in its
  // changeset: a replay writes it itself): it commits exactly when the work
  // does.
  rc->capture.Stop();
  char token[16];
  sqlite3_randomness(sizeof token, token);
  rc->token.assign(token, sizeof token);
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  if (InsertMarker(rc->db, &rc->main_stmts, rc->token, now) != SQLITE_OK) {
    std::string e = Err(rc->db);
    ForgetBranch(rc);
    return Fail(rmid, XA_RBOTHER, "cannot write the commit marker: " + e);
  }
  // DDL is refused in branches: the schema is still the one read at xa_start.
  const uint64_t fp = rc->schema_fp;
  const bool batch = !rc->done.empty();
  if (batch && Run(rc->side_stmts, rc->side, "BEGIN IMMEDIATE") == SQLITE_OK) {
    for (const XID& d : rc->done) {
      StmtCache::Use del = rc->side_stmts.Get(
          rc->side, "DELETE FROM prepared WHERE format_id = ?1 AND gtrid = ?2 AND bqual = ?3");
      if (del.ok()) {
        del->Bind(1, static_cast<int64_t>(d.formatID)).Bind(2, rm::Gtrid(d)).Bind(3, rm::Bqual(d));
        del->Step();
      }
    }
  }
  {
    StmtCache::Use ins = rc->side_stmts.Get(
        rc->side, "INSERT INTO prepared (format_id, gtrid, bqual, token, db_id, schema_fp, changeset, "
                  "digests, prepared_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    if (!ins.ok() || ins->Bind(1, static_cast<int64_t>(xid->formatID))
                             .Bind(2, rm::Gtrid(*xid))
                             .Bind(3, rm::Bqual(*xid))
                             .Bind(4, rc->token)
                             .Bind(5, rc->db_id)
                             .Bind(6, static_cast<int64_t>(fp))
                             .Bind(7, changeset)
                             .Bind(8, digests)
                             .Bind(9, now)
                             .Step() != SQLITE_DONE) {
      std::string e = Err(rc->side);
      if (!sqlite3_get_autocommit(rc->side)) ExecSql(rc->side, "ROLLBACK");
      ForgetBranch(rc);
      return Fail(rmid, XA_RBOTHER, "cannot write the prepared record to " + SidecarPath(rc->opts.path) +
                                        ": " + e + "; the branch was rolled back");
    }
  }
  if (!sqlite3_get_autocommit(rc->side)) {
    if (Run(rc->side_stmts, rc->side, "COMMIT") != SQLITE_OK) {
      std::string e = Err(rc->side);
      ExecSql(rc->side, "ROLLBACK");
      ForgetBranch(rc);
      return Fail(rmid, XA_RBOTHER, "cannot write the prepared record to " +
                                        SidecarPath(rc->opts.path) + ": " + e + "; the branch was rolled back");
    }
    rc->done.clear();
  }
  // If we crash now, the branch is prepared: its record is durable in the
  // sidecar, and only a decision ends it.
  XATM_CRASH_POINT("sqlite.prepare.after_sidecar_write");
  EndSession(rc);
  rc->state = BranchState::kPrepared;
  rc->changes_at_prepare = sqlite3_total_changes64(rc->db);
  RejudgeStatements(rc);
  return XA_OK;
}

void AfterCommit(RmConn* rc) {
  ++rc->commits;
  if (rc->commits % kGcEvery == 0) {
    CollectMarkers(rc);
  } else if (rc->commits % kCheckpointEvery == 0) {
    // On the synchronous connection: the checkpoint syncs the file before the
    // WAL is reused.
    ExecSql(rc->side, "PRAGMA wal_checkpoint(PASSIVE)");
  }
}

int CommitPrepared(RmConn* rc) {
  const XID xid = rc->xid;
  Internal in(rc);
  if (sqlite3_total_changes64(rc->db) != rc->changes_at_prepare) {
    // Something was written on the handle after prepare (by a statement
    // prepared before it): commit exactly what was prepared, from the sidecar.
    ForgetBranch(rc);
    int r = Replay(rc, xid);
    return r == XA_OK || r == XA_HEURHAZ ? r : Fail(rc->rmid, XAER_RMFAIL, LastError(rc->rmid));
  }
  int c = Run(rc->main_stmts, rc->db, "COMMIT");
  if (c == SQLITE_OK) {
    // If we crash now, the marker says the branch committed; the record left
    // in the sidecar is only deleted by the next xa_commit.
    XATM_CRASH_POINT("sqlite.commit.after_main_commit");
    rc->state = BranchState::kNone;
    std::memset(&rc->xid, 0, sizeof rc->xid);
    rc->done.push_back(xid);
    if (rc->done.size() >= kMaxDone) FlushDone(rc);
    AfterCommit(rc);
    return XA_OK;
  }
  if ((c & 0xff) == SQLITE_BUSY && !sqlite3_get_autocommit(rc->db)) {
    return Fail(rc->rmid, XA_RETRY, "COMMIT is blocked by readers of " + rc->opts.path +
                                        " (rollback-journal mode); the branch stays prepared: retry");
  }
  // The transaction is gone (or cannot commit): the sidecar record is the
  // branch now. Replay it.
  std::string e = Err(rc->db);
  ForgetBranch(rc);
  int r = Replay(rc, xid);
  if (r == XA_OK) return XA_OK;
  if (r == XA_HEURHAZ) return r;
  return Fail(rc->rmid, XAER_RMFAIL, "COMMIT failed (" + e + ") and the replay of the prepared "
                                         "changeset did not succeed yet: " + LastError(rc->rmid) +
                                         "; the branch stays prepared, retry the commit");
}

int OnePhase(RmConn* rc) {
  if (int vote = CheckCommittable(rc); vote != 0) {
    ForgetBranch(rc);
    return vote;
  }
  Internal in(rc);
  int c = Run(rc->main_stmts, rc->db, "COMMIT");
  if (c == SQLITE_OK) {
    ForgetBranch(rc);
    AfterCommit(rc);
    return XA_OK;
  }
  if ((c & 0xff) == SQLITE_BUSY && !sqlite3_get_autocommit(rc->db)) {
    return Fail(rc->rmid, XA_RETRY, "COMMIT is blocked by readers: retry");
  }
  std::string e = Err(rc->db);
  ForgetBranch(rc);
  return Fail(rc->rmid, RollbackCodeOf(c), "one-phase commit rolled back: " + e);
}

int SqCommit(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMONEPHASE | TMNOWAIT, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  const bool one = flags & TMONEPHASE;
  if (Mine(rc, xid)) {
    switch (rc->state) {
      case BranchState::kActive:
      case BranchState::kSuspended:
        return Fail(rmid, XAER_PROTO, "the branch must be ended (xa_end) before it is committed");
      case BranchState::kIdle:
        if (!one) return Fail(rmid, XAER_PROTO, "the branch is not prepared: prepare it or use TMONEPHASE");
        return OnePhase(rc);
      case BranchState::kRollbackOnly: {
        if (!one) return Fail(rmid, XAER_PROTO, "the branch is not prepared");
        int code = rc->rb_code;
        ForgetBranch(rc);
        return Fail(rmid, code, "the branch is rollback-only and was rolled back");
      }
      case BranchState::kPrepared:
        if (one) return Fail(rmid, XAER_PROTO, "the branch is prepared: commit it without TMONEPHASE");
        return CommitPrepared(rc);
      case BranchState::kNone:
        break;
    }
  }
  for (const XID& d : rc->done) {
    if (rm::XidEqual(d, *xid)) return Fail(rmid, XAER_NOTA, "the branch is already committed");
  }
  if (one) {
    if (ReadRecord(rc, *xid, nullptr) == 1) return Fail(rmid, XAER_PROTO, "the branch is prepared: commit it without TMONEPHASE");
    return Fail(rmid, XAER_NOTA, "no such branch on this handle");
  }
  return Replay(rc, *xid);
}

int SqRollback(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, 0, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  if (Mine(rc, xid)) {
    if (rc->state == BranchState::kActive || rc->state == BranchState::kSuspended) {
      return Fail(rmid, XAER_PROTO, "the branch is associated with this thread: xa_end it first");
    }
    const bool prepared = rc->state == BranchState::kPrepared;
    const XID x = rc->xid;
    ForgetBranch(rc);
    if (prepared) DeleteRecordUnforced(rc, x);
    return XA_OK;
  }
  for (const XID& d : rc->done) {
    if (rm::XidEqual(d, *xid)) return Fail(rmid, XAER_NOTA, "the branch is already committed");
  }
  Record r;
  int found = ReadRecord(rc, *xid, &r);
  if (found < 0) return Fail(rmid, XAER_RMERR, "cannot read the sidecar: " + Err(rc->side));
  if (found == 0) return Fail(rmid, XAER_NOTA, "no prepared branch with this XID");
  const bool committed = MarkerExists(rc, rc->db, r.token) == 1;
  DeleteRecordUnforced(rc, *xid);
  if (committed) return Fail(rmid, XA_HEURCOM, "the branch had already committed");
  return XA_OK;
}

int SqRecover(XID* xids, long count, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, TMSTARTRSCAN | TMENDRSCAN, &rc, /*writes=*/false); r != XA_OK) return r;
  if (count < 0 || (xids == nullptr && count > 0)) return Fail(rmid, XAER_INVAL, "bad xids/count");
  if (flags & TMSTARTRSCAN) {
    std::vector<XID> in_doubt;
    std::vector<XID> committed;
    {
      Stmt st(rc->side, "SELECT format_id, gtrid, bqual, token FROM prepared ORDER BY prepared_at, rowid");
      if (!st.ok()) return Fail(rmid, XAER_RMERR, "cannot read the sidecar: " + Err(rc->side));
      int s;
      while ((s = st.Step()) == SQLITE_ROW) {
        XID x;
        if (!rm::MakeXid(static_cast<long>(st.Int(0)), st.Blob(1), st.Blob(2), &x)) continue;
        // Committed, only its record is left: not in doubt. (The handle's own
        // prepared branch sees its uncommitted marker: it is in doubt.)
        if (!Mine(rc, &x) && MarkerExists(rc, rc->db, st.Blob(3)) == 1) committed.push_back(x);
        else in_doubt.push_back(x);
      }
      if (s != SQLITE_DONE) return Fail(rmid, XAER_RMERR, "cannot read the sidecar: " + Err(rc->side));
    }
    if (!rc->opts.readonly) {
      for (const XID& x : committed) DeleteRecordUnforced(rc, x);
    }
    rc->scan.Start(std::move(in_doubt));
  } else if (!rc->scan.open()) {
    return Fail(rmid, XAER_INVAL, "no recovery scan is open: start one with TMSTARTRSCAN");
  }
  return rc->scan.Take(xids, count, flags);
}

int SqForget(XID* xid, int rmid, long flags) {
  RmConn* rc;
  if (int r = Enter(rmid, flags, 0, &rc); r != XA_OK) return r;
  if (!rm::XidValid(xid)) return Fail(rmid, XAER_INVAL, "invalid XID");
  if (Mine(rc, xid)) return Fail(rmid, XAER_PROTO, "the branch is not heuristically completed");
  for (const XID& d : rc->done) {
    if (rm::XidEqual(d, *xid)) return Fail(rmid, XAER_NOTA, "the branch committed; nothing to forget");
  }
  Record r;
  int found = ReadRecord(rc, *xid, &r);
  if (found < 0) return Fail(rmid, XAER_RMERR, "cannot read the sidecar: " + Err(rc->side));
  if (found == 0) return Fail(rmid, XAER_NOTA, "no such branch");
  if (r.hazard.empty()) return Fail(rmid, XAER_PROTO, "the branch is prepared, not heuristically completed");
  DeleteRecordUnforced(rc, *xid);
  return XA_OK;
}

int SqComplete(int*, int*, int rmid, long flags) {
  if (flags & TMASYNC) return Fail(rmid, XAER_ASYNC, "asynchronous XA calls are not supported");
  return Fail(rmid, XAER_PROTO, "no asynchronous operation is outstanding");
}

}  // namespace

std::string LastError(int rmid) {
  auto it = tls_errors.find(rmid);
  return it == tls_errors.end() ? std::string() : it->second;
}

std::string SidecarPath(const std::string& path) { return path + "-xatm"; }

bool BranchHasWrites(int rmid) {
  RmConn* rc = Find(rmid);
  if (rc == nullptr || !InTransactionOfBranch(rc->state)) return true;
  return !rc->capture.empty() || !rc->capture.problem().empty();
}

std::string WriteDecisionRow(int rmid, std::string_view gtrid, int64_t decided_at,
                             const std::vector<std::string>& finished) {
  RmConn* rc = Find(rmid);
  if (rc == nullptr || rc->state != BranchState::kActive) return "no active branch of this RM on this thread";
  Internal in(rc);
  {
    StmtCache::Use ins = rc->main_stmts.Get(rc->db, "INSERT INTO main.xatm_decision (gtrid, decided_at) VALUES (?1, ?2)");
    if (!ins.ok() || ins->Bind(1, gtrid).Bind(2, decided_at).Step() != SQLITE_DONE) return Err(rc->db);
  }
  for (const std::string& g : finished) {
    StmtCache::Use del = rc->main_stmts.Get(rc->db, "DELETE FROM main.xatm_decision WHERE gtrid = ?1");
    if (!del.ok() || del->Bind(1, g).Step() != SQLITE_DONE) return Err(rc->db);
  }
  return "";
}

std::string DatabaseIdOf(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0) return "";
  sqlite3* db = nullptr;
  std::string id;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 1000);
    Stmt st(db, "SELECT value FROM main.xatm_meta WHERE key = 'db_id'");
    if (st.ok() && st.Step() == SQLITE_ROW) id = st.Blob(0);
  }
  sqlite3_close_v2(db);
  return id;
}

int ReadDecisionRows(const std::string& path, int busy_timeout_ms, bool locked, const std::string* only,
                     std::set<std::string>* out, std::string* why) {
  sqlite3* db = nullptr;
  struct Close {
    sqlite3** db;
    ~Close() { sqlite3_close_v2(*db); }
  } close{&db};
  // Its own connection: the thread's handle may be inside a branch. Never
  // created: a missing file is an error, not "no decision".
  if (::access(path.c_str(), F_OK) != 0) {
    *why = "SQLite database " + path + " does not exist";
    return -1;
  }
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    *why = "cannot open " + path + ": " + Err(db);
    return -1;
  }
  sqlite3_busy_timeout(db, busy_timeout_ms);
  if (ExecSql(db, locked ? "BEGIN IMMEDIATE" : "BEGIN") != SQLITE_OK) {
    *why = (locked ? "cannot take the write lock of " : "cannot read ") + path + ": " + Err(db) +
           (locked ? " (a transaction holding it may be about to commit a decision)" : "");
    return -1;
  }
  int result = -1;
  {
    Stmt have(db, "SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name = 'xatm_decision'");
    if (!have.ok() || have.Step() != SQLITE_ROW) {
      *why = "cannot read the schema of " + path + ": " + Err(db);
    } else if (have.Int(0) == 0) {
      result = 0;  // no decision table: no decision here
    } else {
      Stmt st(db, std::string("SELECT gtrid FROM main.xatm_decision") + (only ? " WHERE gtrid = ?1" : ""));
      if (st.ok() && only) st.Bind(1, *only);
      int step = SQLITE_ERROR;
      while (st.ok() && (step = st.Step()) == SQLITE_ROW) out->insert(st.Blob(0));
      if (step == SQLITE_DONE) {
        result = 0;
      } else {
        *why = "cannot read the decision rows of " + path + ": " + Err(db);
      }
    }
  }
  ExecSql(db, "ROLLBACK");
  return result;
}

bool TrustFreshXids(int rmid) {
  RmConn* rc = Find(rmid);
  if (rc == nullptr) return false;
  rc->fresh_xids = true;
  return true;
}

bool AbortBranchOf(sqlite3* db) {
  std::lock_guard<std::mutex> l(g_handles_mu);
  auto it = g_handles.find(db);
  if (it == g_handles.end()) return false;
  RmConn* rc = it->second;
  sqlite3_mutex* m = sqlite3_db_mutex(db);
  sqlite3_mutex_enter(m);
  bool done = false;
  if (rc->state == BranchState::kActive || rc->state == BranchState::kSuspended ||
      rc->state == BranchState::kIdle) {
    rc->aborted = true;
    bool was = rc->internal;
    rc->internal = true;
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    rc->internal = was;
    done = true;
  }
  sqlite3_mutex_leave(m);
  return done;
}

}  // namespace xtm::sqlite

extern "C" {

struct xa_switch_t xatm_sqlite_switch = {
    "xatm_sqlite",
    TMNOMIGRATE,
    0,
    xtm::sqlite::SqOpen,
    xtm::sqlite::SqClose,
    xtm::sqlite::SqStart,
    xtm::sqlite::SqEnd,
    xtm::sqlite::SqRollback,
    xtm::sqlite::SqPrepare,
    xtm::sqlite::SqCommit,
    xtm::sqlite::SqRecover,
    xtm::sqlite::SqForget,
    xtm::sqlite::SqComplete,
};

sqlite3* xatm_sqlite_db(int rmid) {
  xtm::sqlite::RmConn* rc = xtm::sqlite::Find(rmid);
  return rc ? rc->db : nullptr;
}

const char* xatm_sqlite_errmsg(int rmid) {
  auto it = xtm::sqlite::tls_errors.find(rmid);
  return it == xtm::sqlite::tls_errors.end() ? "" : it->second.c_str();
}

}  // extern "C"
