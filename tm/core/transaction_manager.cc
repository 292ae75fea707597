#include "core/transaction_manager.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/xid_util.h"
#include "core/gtrid.h"
#include "pgsql/pgsql_rm.h"
#include "store/open_store.h"
#include "util/coding.h"
#include "sqlite/sqlite_rm.h"
#include "util/crash_point.h"
#include "xatm/rm_pgsql.h"
#include "xatm/rm_sqlite.h"

namespace xtm::tm {
namespace {

const char* OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kOk: return "committed";
    case Outcome::kRolledBack: return "rolled back";
    case Outcome::kTimedOut: return "rolled back (timeout)";
    case Outcome::kPending: return "committed, some branches left to recovery";
    case Outcome::kHeurMix: return "heuristic mix";
    case Outcome::kHeurHaz: return "heuristic hazard";
    case Outcome::kHeurRb: return "heuristic rollback";
    case Outcome::kUnknown: return "outcome unknown";
    case Outcome::kInvalid: return "invalid call";
    case Outcome::kRmError: return "failed (resource manager)";
    case Outcome::kNotFound: return "not found";
    case Outcome::kLogError: return "failed (decision log)";
    case Outcome::kFenced: return "rolled back (session ended)";
  }
  return "?";
}

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

// A connection to rm for statements outside any branch: this thread's own
// when it is open and free, else a new one, left in *own for PQfinish.
PGconn* FreeConnection(const Rm* rm, PGconn** own) {
  *own = nullptr;
  PGconn* c = xatm_pgsql_conn(rm->rmid);
  if (c == nullptr || PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE) {
    c = *own = PQconnectdb(rm->plain_info.c_str());
  }
  return c;
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
std::string PgBytea(const std::string& bytes) { return "decode('" + ToHex(bytes) + "', 'hex')"; }
std::string PgByteaList(const std::vector<std::string>& all) {
  std::string out;
  for (const std::string& b : all) out += (out.empty() ? "" : ", ") + PgBytea(b);
  return out;
}

using Clock = std::chrono::steady_clock;

// Background phase two: its threads, and how many hand-offs may wait for
// them before callers finish their own phase two again (so that a backlog
// never builds up behind the prepared branches' locks).
constexpr int kPhaseTwoThreads = 4;
constexpr size_t kPhaseTwoQueue = 2 * kPhaseTwoThreads;
// xatm.decision takes one row in and one out per transaction: between
// autovacuum's visits (a minute apart by default) its dead rows would pile up
// and make every insert costlier. The TM vacuums it itself after this many
// rows, at most once per interval.
constexpr uint64_t kVacuumEveryRows = 1000;
constexpr auto kVacuumInterval = std::chrono::seconds(1);

// rmids are unique in the process, so that several TMs never share one.
std::atomic<int> g_next_rmid{1000};
std::atomic<int> g_logger_serial{0};

// The RMs opened on this thread. When the thread ends, xatm's own RMs close
// their connections themselves (their per-thread state is thread_local too);
// third-party switches get an xa_close.
struct ThreadRms {
  struct Open {
    xa_switch_t* sw = nullptr;
    uint64_t epoch = 0;  // the TM's session epoch it was opened in
    int backend_pid = 0;  // PostgreSQL: the backend registered for branches (0: none yet)
    std::string backend_start;
  };
  std::map<int, Open> open;
  // Branches this thread holds prepared of transactions whose commit
  // returned "unknown" (a SQLite branch lives in the thread's connection):
  // settled at the next Begin once the store can tell the outcome.
  struct InDoubt {
    const TransactionManager* tm;
    Rm* rm;
    XID xid;
    std::string gtrid;
  };
  std::vector<InDoubt> in_doubt;
  ~ThreadRms() {
    for (auto& [rmid, o] : open) {
      if (o.sw != &xatm_pgsql_switch && o.sw != &xatm_sqlite_switch) {
        o.sw->xa_close_entry(const_cast<char*>(""), rmid, TMNOFLAGS);
      }
    }
  }
};
thread_local ThreadRms tls_rms;

bool IsRollbackCode(int rc) { return rc >= XA_RBBASE && rc <= XA_RBEND; }

const char* XaName(int rc) {
  switch (rc) {
    case XA_OK: return "XA_OK";
    case XA_RDONLY: return "XA_RDONLY";
    case XA_RETRY: return "XA_RETRY";
    case XA_HEURMIX: return "XA_HEURMIX";
    case XA_HEURRB: return "XA_HEURRB";
    case XA_HEURCOM: return "XA_HEURCOM";
    case XA_HEURHAZ: return "XA_HEURHAZ";
    case XAER_ASYNC: return "XAER_ASYNC";
    case XAER_RMERR: return "XAER_RMERR";
    case XAER_NOTA: return "XAER_NOTA";
    case XAER_INVAL: return "XAER_INVAL";
    case XAER_PROTO: return "XAER_PROTO";
    case XAER_RMFAIL: return "XAER_RMFAIL";
    case XAER_DUPID: return "XAER_DUPID";
    case XAER_OUTSIDE: return "XAER_OUTSIDE";
    default: return IsRollbackCode(rc) ? "XA_RB*" : "?";
  }
}

// xa_commit(TMONEPHASE), again while the RM answers XA_RETRY (for up to a second).
template <typename B>
int CommitOnePhase(B& b) {
  int rc;
  for (int attempt = 0;; ++attempt) {
    rc = b.rm->sw->xa_commit_entry(&b.xid, b.rm->rmid, TMONEPHASE);
    if (rc != XA_RETRY || attempt >= 100) return rc;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string Describe(int rc, const std::string& rm_message) {
  std::string s = XaName(rc);
  if (IsRollbackCode(rc)) s = "XA_RB (" + std::to_string(rc) + ")";
  if (!rm_message.empty()) s += ": " + rm_message;
  return s;
}

// The PostgreSQL conninfo with this TM's session tag, so that recovery can
// find (and end) the sessions of a dead incarnation.
std::string TagConninfo(const std::string& conninfo, const std::string& tag) {
  if (conninfo.rfind("postgresql://", 0) == 0 || conninfo.rfind("postgres://", 0) == 0) {
    return conninfo + (conninfo.find('?') == std::string::npos ? "?" : "&") + "application_name=" + tag;
  }
  return conninfo + " application_name=" + tag;
}

std::string SessionTag(const std::string& node_id, uint32_t incarnation) {
  return "xatm/" + ToHex(node_id) + "/" + std::to_string(incarnation);
}

std::shared_ptr<spdlog::logger> MakeLogger(const TmConfig& cfg, std::string* error) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  try {
    if (cfg.log_file.empty()) {
      sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    } else {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(cfg.log_file);
    }
  } catch (const std::exception& e) {
    *error = cfg.source + ": [tm] log_file: " + e.what();
    return nullptr;
  }
  auto l = std::make_shared<spdlog::logger>("xatm-" + std::to_string(++g_logger_serial), sink);
  l->set_pattern("%Y-%m-%d %H:%M:%S.%e xatm[%P] %l: %v");
  l->set_level(spdlog::level::from_str(cfg.log_level));
  l->flush_on(spdlog::level::info);
  return l;
}

std::string HostName() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "xatm";
  std::string h = buf;
  for (char& c : h) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) c = '-';
  }
  return h.substr(0, 63);
}

}  // namespace

// ---------------------------------------------------------------------------
// Opening and closing

Status TransactionManager::Open(const TmConfig& cfg_in, std::unique_ptr<TransactionManager>* out,
                                const OpenOptions& options) {
  out->reset();
  Status s = ValidateConfig(cfg_in);
  if (!s.ok()) return s;
  TmConfig cfg = cfg_in;
  if (cfg.node_name.empty()) cfg.node_name = HostName();
  std::unique_ptr<TransactionManager> tm(new TransactionManager(cfg, options));
  std::string err;
  tm->logger_ = MakeLogger(cfg, &err);
  if (!tm->logger_) return Status::InvalidArgument(err);
  s = tm->OpenStore();
  if (!s.ok()) return s;
  s = tm->OpenRms();
  if (!s.ok()) return s;
  if (!options.read_only) {
    // Whoever takes this node over must reach these very databases.
    if (Status d = tm->store_->DescribeRms(store::RmIdentities(cfg)); !d.ok()) {
      tm->logger_->warn("{}: a node taking this one over will leave its transactions without a decision alone",
                        d.message());
    }
  }
  tm->logger_->info("opened: node {} ({}), incarnation {}, {}, {} resource manager(s)", ToHex(tm->node_id()),
                    tm->store_->node_name(), tm->incarnation(),
                    !cfg.server.empty()                             ? "a session of xatmd at " + cfg.server
                    : cfg.log_store == TmConfig::LogStore::kPostgres ? std::string("decisions in PostgreSQL")
                                                                     : "log " + cfg.log_dir,
                    tm->rms_.size());
  if (options.read_only) {
    *out = std::move(tm);
    return Status::OK();
  }
  tm->reaper_ = std::thread([t = tm.get()] { t->ReaperLoop(); });
  if (cfg.takeover) tm->takeover_ = std::thread([t = tm.get()] { t->TakeoverLoop(); });
  if (cfg.background_phase_two) {
    for (int i = 0; i < kPhaseTwoThreads; ++i) tm->phase_two_.emplace_back([t = tm.get()] { t->PhaseTwoLoop(); });
  }
  if (options.recover && cfg.recover_on_open && !tm->store_->RecoversElsewhere()) {
    RecoveryReport report;
    s = tm->Recover(/*dry_run=*/false, &report);
    if (!s.ok()) return s;
  }
  *out = std::move(tm);
  return Status::OK();
}

TransactionManager::TransactionManager(const TmConfig& cfg, const OpenOptions& options)
    : cfg_(cfg), options_(options) {}

Status TransactionManager::OpenStore() {
  Status s = store::OpenStore(cfg_, {.read_only = options_.read_only, .force = options_.force}, &store_);
  if (!s.ok()) return s;
  if (log::DecisionLog* log = store_->file_log()) {
    for (const std::string& w : log->warnings()) logger_->warn("decision log: {}", w);
  }
  return Status::OK();
}

Status TransactionManager::RegisterBackend(Rm* rm, store::Session* session) {
  auto it = tls_rms.open.find(rm->rmid);
  int pid = 0;
  std::string start;
  if (it == tls_rms.open.end() || !pgsql::BackendOf(rm->rmid, &pid, &start)) return Status::OK();
  if (it->second.backend_pid == pid && it->second.backend_start == start) return Status::OK();
  Status s = store_->RegisterBackend(session->incarnation(), BackendId{rm->spec.name, pid, start}, session);
  if (s.IsFenced()) return s;  // an ended session starts no branch
  if (!s.ok()) {
    // Not a commit point: a backend recovery cannot find by its identity is
    // found by its session tag, and the decisions stay fenced by their locks.
    logger_->warn("cannot register the backend (pid {}) of {}: {}; recovery after a crash finds it only by its "
                  "session tag", pid, rm->spec.name, s.message());
  }
  it->second.backend_pid = pid;
  it->second.backend_start = start;
  return Status::OK();
}

std::string TransactionManager::XaInfo(const Rm* rm) const {
  if (rm->spec.type != RmSpec::Type::kPostgres) return rm->xa_info;
  return TagConninfo(rm->plain_info, SessionTag(node_id(), incarnation()));
}

Status TransactionManager::OpenRms() {
  for (const RmSpec& spec : cfg_.rms) {
    auto rm = std::make_unique<Rm>();
    rm->spec = spec;
    rm->rmid = g_next_rmid++;
    switch (spec.type) {
      case RmSpec::Type::kPostgres:
        rm->sw = &xatm_pgsql_switch;
        rm->plain_info = spec.conninfo;
        break;
      case RmSpec::Type::kSqlite:
        rm->sw = &xatm_sqlite_switch;
        rm->xa_info = "path=" + spec.path;
        if (spec.busy_timeout_ms >= 0) rm->xa_info += " busy_timeout_ms=" + std::to_string(spec.busy_timeout_ms);
        if (options_.read_only) rm->xa_info += " readonly=1";  // looking writes nothing
        break;
      case RmSpec::Type::kSwitch:
        rm->sw = spec.sw;
        rm->xa_info = spec.xa_info;
        break;
    }
    std::string msg;
    const bool opened = EnsureOpen(rm.get(), &msg) == XA_OK;
    if (!opened && !options_.tolerate_unreachable_rms) {
      return Status::InvalidArgument("resource manager \"" + spec.name + "\" (" + RmTypeName(spec.type) +
                                     ") cannot be opened: " + msg);
    }
    if (opened && spec.type == RmSpec::Type::kPostgres &&
        cfg_.last_resource_commit == TmConfig::LastResource::kAny && !options_.read_only) {
      if (Status d = EnsureDecisionTable(rm.get()); !d.ok()) return d;
    }
    rms_.push_back(std::move(rm));
  }
  return Status::OK();
}

TransactionManager::~TransactionManager() {
  StopPhaseTwo();
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  reaper_cv_.notify_all();
  takeover_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  if (takeover_.joinable()) takeover_.join();
  if (store_) {
    store_->ReportCounters(counters());
    store_->Close();
  }
  for (auto& rm : rms_) {
    auto it = tls_rms.open.find(rm->rmid);
    if (it != tls_rms.open.end()) {
      rm->sw->xa_close_entry(const_cast<char*>(rm->xa_info.c_str()), rm->rmid, TMNOFLAGS);
      tls_rms.open.erase(it);
    }
  }
}

Outcome TransactionManager::Close(std::string* message) {
  if (options_.read_only) return Outcome::kOk;
  StopPhaseTwo();  // what was handed off is finished first
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  reaper_cv_.notify_all();
  takeover_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  if (takeover_.joinable()) takeover_.join();
  bool pending, by_rows;
  {
    std::lock_guard<std::mutex> l(mu_);
    pending = !pending_.empty();
    by_rows = !pending_rows_.empty();
  }
  // A last resource's decision row settles its transaction only once this
  // process is gone (recovery leaves a live one alone): one more try here.
  if (by_rows) RetryLeftovers();
  Outcome o = Outcome::kOk;
  Status s;
  if (pending) {
    RecoveryReport r;
    s = Recover(false, &r);
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    const size_t left = pending_.size() + pending_rows_.size();
    if (!s.ok() || left > 0) {
      o = Outcome::kPending;
      *message = std::to_string(left) +
                 " committed transaction(s) still have branches to finish; recovery at the next open "
                 "finishes them";
    }
  }
  DeleteFinishedDecisions();
  store_->ReportCounters(counters());
  store_->Close();
  logger_->info("closed");
  return o;
}

void TransactionManager::DeleteFinishedDecisions() {
  std::map<const Rm*, std::vector<std::string>> all;
  {
    std::lock_guard<std::mutex> l(mu_);
    all.swap(finished_decisions_);
  }
  for (const auto& [rm, gtrids] : all) {
    // Left behind otherwise: a few small rows, collected by a later recovery.
    if (!DeleteDecisionRows(rm, gtrids)) {
      logger_->debug("could not delete {} finished decision row(s) in {}", gtrids.size(), rm->spec.name);
    }
  }
}

// Rows of transactions of this node whose process is gone and none of whose
// branches is prepared anywhere (every RM was just scanned): nothing can ask
// for them again. They are left by a process that ended without deleting
// them (killed, or in the middle of its queue).
void TransactionManager::CollectDecisionRows(const std::string& node_id, const LiveSet& live,
                                             const std::set<std::string>& in_doubt, DecisionRows* rows) {
  for (auto& rm : rms_) {
    const std::set<std::string>* all = CachedDecisionRows(rm.get(), rows);
    if (all == nullptr) continue;
    std::vector<std::string> gone;
    for (const std::string& g : *all) {
      GtridParts p;
      if (ParseGtrid(g, &p) && p.node_id == node_id && !live.Live(p.incarnation) && !in_doubt.count(g)) {
        gone.push_back(g);
      }
    }
    if (!gone.empty() && DeleteDecisionRows(rm.get(), gone)) {
      logger_->info("recovery: deleted {} decision row(s) of finished transactions in {}", gone.size(),
                    rm->spec.name);
    }
  }
}

bool TransactionManager::DeleteDecisionRows(const Rm* rm, const std::vector<std::string>& gtrids) {
  if (gtrids.empty()) return true;
  bool ok = false;
  if (rm->spec.type == RmSpec::Type::kPostgres) {
    PGconn* own;
    PGconn* c = FreeConnection(rm, &own);
    PGresult* r = PQstatus(c) == CONNECTION_OK
                      ? PQexec(c, ("DELETE FROM xatm.decision WHERE gtrid IN (" + PgByteaList(gtrids) + ")").c_str())
                      : nullptr;
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (own) PQfinish(own);
  } else if (rm->spec.type == RmSpec::Type::kSqlite) {
    // Not on this thread's handle, which may hold an open branch.
    std::string list;  // blob literals
    for (const std::string& g : gtrids) list += (list.empty() ? "" : ", ") + ("x'" + ToHex(g) + "'");
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(rm->spec.path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
      sqlite3_busy_timeout(db, rm->spec.busy_timeout_ms >= 0 ? rm->spec.busy_timeout_ms : 5000);
      ok = sqlite3_exec(db, ("DELETE FROM main.xatm_decision WHERE gtrid IN (" + list + ")").c_str(), nullptr,
                        nullptr, nullptr) == SQLITE_OK;
    }
    sqlite3_close(db);
  }
  return ok;
}

// Without truncating the table: that would take a lock that the next
// transaction's decision row waits for.
void TransactionManager::VacuumDecisionTable(Rm* rm) {
  rm->rows_since_vacuum = 0;
  PGconn* own;
  PGconn* c = FreeConnection(rm, &own);
  PGresult* r = PQstatus(c) == CONNECTION_OK ? PQexec(c, "VACUUM (TRUNCATE false) xatm.decision") : nullptr;
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    logger_->info("cannot vacuum xatm.decision in {}: {}", rm->spec.name, PgMessage(c, r));
  }
  PQclear(r);
  if (own) PQfinish(own);
}

Rm* TransactionManager::FindRm(const std::string& name) {
  for (auto& rm : rms_) {
    if (rm->spec.name == name) return rm.get();
  }
  return nullptr;
}

std::string TransactionManager::RmError(const Rm* rm) const {
  switch (rm->spec.type) {
    case RmSpec::Type::kPostgres: return pgsql::LastError(rm->rmid);
    case RmSpec::Type::kSqlite: return sqlite::LastError(rm->rmid);
    case RmSpec::Type::kSwitch: return "";
  }
  return "";
}

int TransactionManager::EnsureOpen(Rm* rm, std::string* message) {
  const uint64_t epoch = store_->generation();
  if (auto it = tls_rms.open.find(rm->rmid); it != tls_rms.open.end()) {
    if (it->second.epoch == epoch) return XA_OK;
    // Opened in an earlier session, which the server has ended: its backends
    // are the old session's (and are being terminated). A new connection,
    // unless a branch of the old session is still open on it.
    if (rm->sw->xa_close_entry(const_cast<char*>(""), rm->rmid, TMNOFLAGS) != XA_OK) return XA_OK;
    tls_rms.open.erase(it);
  }
  const std::string info = XaInfo(rm);
  int rc = rm->sw->xa_open_entry(const_cast<char*>(info.c_str()), rm->rmid, TMNOFLAGS);
  if (rc != XA_OK) {
    *message = Describe(rc, RmError(rm));
    return rc;
  }
  tls_rms.open[rm->rmid] = ThreadRms::Open{rm->sw, epoch};
  // This TM's xids are new by construction (node id, incarnation, sequence):
  // its connections skip the RMs' duplicate-xid checks at xa_start.
  if (rm->spec.type == RmSpec::Type::kPostgres) pgsql::TrustFreshXids(rm->rmid);
  if (rm->spec.type == RmSpec::Type::kSqlite) sqlite::TrustFreshXids(rm->rmid);
  return XA_OK;
}

int TransactionManager::Reopen(Rm* rm, std::string* message) {
  if (tls_rms.open.erase(rm->rmid)) {
    rm->sw->xa_close_entry(const_cast<char*>(rm->xa_info.c_str()), rm->rmid, TMNOFLAGS);
  }
  return EnsureOpen(rm, message);
}

// ---------------------------------------------------------------------------
// Transactions

Status TransactionManager::Begin(std::unique_ptr<Transaction>* out) {
  if (options_.read_only) return Status::InvalidArgument("opened read-only: no transactions");
  std::shared_ptr<store::Session> session = store_->Current();
  // A session the store ended (xatmd's heartbeats find out within a beat):
  // the next transactions run in a new one.
  if (Status s = session->Check(); !s.ok()) {
    const std::string why = s.message();
    s = store_->Renew(session);
    if (!s.ok()) return s.IsFenced() ? s : Status::IOError(s.message());
    session = store_->Current();
    logger_->warn("{}; continuing in a new session (incarnation {})", why, session->incarnation());
  }
  if (!tls_rms.in_doubt.empty()) SettleThreadInDoubt();
  ++begun_;
  const uint64_t seq = ++sequence_;
  std::string gtrid = MakeGtrid(node_id(), session->incarnation(), seq);
  out->reset(new Transaction(this, std::move(gtrid), std::move(session)));
  Register(out->get());
  return Status::OK();
}

void TransactionManager::SettleThreadInDoubt() {
  auto& all = tls_rms.in_doubt;
  for (auto it = all.begin(); it != all.end();) {
    if (it->tm != this) {
      ++it;
      continue;
    }
    bool committed = false;
    Status s = store_->Outcome(it->gtrid, {it->rm->spec.name}, &committed);
    if (s.IsNotSupported()) {
      it = all.erase(it);  // this store's recovery settles it
      continue;
    }
    if (!s.ok()) {
      // Not known yet: the branch stays; if the connection is replaced, the
      // RM keeps it prepared for recovery.
      logger_->warn("{} on {}: outcome not known yet: {}", ToHex(it->gtrid), it->rm->spec.name, s.message());
      ++it;
      continue;
    }
    const int rc = committed ? it->rm->sw->xa_commit_entry(&it->xid, it->rm->rmid, TMNOFLAGS)
                             : it->rm->sw->xa_rollback_entry(&it->xid, it->rm->rmid, TMNOFLAGS);
    if (rc == XA_OK || rc == XAER_NOTA) {
      logger_->warn("{}: {} its branch on {} (the outcome its commit could not tell)", ToHex(it->gtrid),
                    committed ? "committed" : "rolled back", it->rm->spec.name);
    } else {
      logger_->error("{}: could not {} its branch on {}: {}; recovery finishes it", ToHex(it->gtrid),
                     committed ? "commit" : "roll back", it->rm->spec.name, Describe(rc, RmError(it->rm)));
    }
    it = all.erase(it);
  }
}

Transaction::Transaction(TransactionManager* tm, std::string gtrid, std::shared_ptr<store::Session> session)
    : tm_(tm), gtrid_(std::move(gtrid)), session_(std::move(session)),
      deadline_(Clock::now() + std::chrono::seconds(tm->cfg_.timeout_s)) {}

Transaction::~Transaction() {
  tm_->Unregister(this);
  if (!finished()) {
    std::string m;
    Rollback(&m);
  }
}

void TransactionManager::Register(Transaction* tx) {
  std::lock_guard<std::mutex> l(mu_);
  active_.insert(tx);
}

void TransactionManager::Unregister(Transaction* tx) {
  std::lock_guard<std::mutex> l(mu_);
  active_.erase(tx);
}

Outcome Transaction::CheckThread(std::string* message) const {
  if (owner_ != std::thread::id() && owner_ != std::this_thread::get_id()) {
    *message = "the branches of this transaction live on the thread that joined them: finish it on that thread";
    return Outcome::kInvalid;
  }
  return Outcome::kOk;
}

Status Transaction::Join(const std::string& name, RmSpec::Type want, void** native) {
  std::lock_guard<std::mutex> l(mu_);
  *native = nullptr;
  if (timed_out_) {
    return Status::Busy("the transaction outlived its timeout (" + std::to_string(tm_->cfg_.timeout_s) +
                        " s) and was rolled back");
  }
  if (state_ != State::kActive) {
    return Status::InvalidArgument("the transaction is already prepared or finished: no branch can join");
  }
  std::string m;
  if (CheckThread(&m) != Outcome::kOk) return Status::InvalidArgument(m);
  Rm* rm = tm_->FindRm(name);
  if (rm == nullptr) {
    std::string names;
    for (const auto& r : tm_->rms_) names += (names.empty() ? "" : ", ") + r->spec.name;
    return Status::NotFound("no resource manager named \"" + name + "\" (configured: " +
                            (names.empty() ? "none" : names) + ")");
  }
  if (rm->spec.type != want) {
    return Status::InvalidArgument("resource manager \"" + name + "\" is of type " + RmTypeName(rm->spec.type) +
                                   ": use the function for that type");
  }
  for (const Branch& b : branches_) {
    if (b.rm == rm) {
      *native = b.native;
      return Status::OK();
    }
  }
  if (branches_.size() >= 0xffff) return Status::InvalidArgument("too many branches");
  if (tm_->EnsureOpen(rm, &m) != XA_OK) {
    return Status::IOError("resource manager \"" + name + "\" is unreachable: " + m);
  }
  Branch b;
  b.rm = rm;
  b.xid = MakeXid(gtrid_, MakeBqual(static_cast<uint16_t>(branches_.size())));
  int rc = rm->sw->xa_start_entry(&b.xid, rm->rmid, TMNOFLAGS);
  if (rc == XAER_RMFAIL && tm_->Reopen(rm, &m) == XA_OK) {
    rc = rm->sw->xa_start_entry(&b.xid, rm->rmid, TMNOFLAGS);
  }
  if (rc != XA_OK) {
    return Status::IOError("cannot start the branch on \"" + name + "\": " + Describe(rc, tm_->RmError(rm)));
  }
  if (rm->spec.type == RmSpec::Type::kPostgres) {
    // Before the application runs anything in it: whoever may have to end
    // this backend (a takeover) knows it by pid and start time.
    if (Status s = tm_->RegisterBackend(rm, session_.get()); !s.ok()) {
      rm->sw->xa_end_entry(&b.xid, rm->rmid, TMFAIL);
      rm->sw->xa_rollback_entry(&b.xid, rm->rmid, TMNOFLAGS);
      return s;
    }
  }
  if (rm->spec.type == RmSpec::Type::kPostgres) b.native = xatm_pgsql_conn(rm->rmid);
  if (rm->spec.type == RmSpec::Type::kSqlite) b.native = xatm_sqlite_db(rm->rmid);
  owner_ = std::this_thread::get_id();
  branches_.push_back(b);
  *native = b.native;
  return Status::OK();
}

void Transaction::RollbackAll(std::string* message) {
  const auto deadline = Clock::now() + std::chrono::seconds(tm_->cfg_.commit_retry_s);
  for (Branch& b : branches_) {
    if (b.st == Branch::St::kDone) continue;
    Rm* rm = b.rm;
    if (b.st == Branch::St::kActive) {
      rm->sw->xa_end_entry(&b.xid, rm->rmid, TMFAIL);  // an XA_RB* here is the expected answer
    }
    std::string m;
    int rc;
    if (b.st == Branch::St::kPrepared) {
      rc = tm_->FinishBranch(rm, b.xid, /*commit=*/false, deadline, &m);
    } else {
      rc = rm->sw->xa_rollback_entry(&b.xid, rm->rmid, TMNOFLAGS);
      m = tm_->RmError(rm);
      // Unprepared work goes with its session when the connection is lost.
      if (rc == XAER_RMFAIL) tm_->Reopen(rm, &m);
    }
    if (rc != XA_OK && rc != XAER_NOTA && !IsRollbackCode(rc) && b.st == Branch::St::kPrepared) {
      std::string what = "rollback of the prepared branch on \"" + rm->spec.name + "\": " + m;
      tm_->logger().warn("{} {}; retrying in the background", ToHex(gtrid_), what);
      tm_->AddLeftover({rm, b.xid, false, gtrid_});
      if (message->empty()) *message = what + " (retried in the background)";
    }
    b.st = Branch::St::kDone;
  }
  state_ = State::kRolledBack;
}

// xa_prepare of an ended branch; its vote goes to b.st. False, with *why,
// if it voted no.
bool Transaction::Vote(Branch& b, std::string* why) {
  const int rc = b.rm->sw->xa_prepare_entry(&b.xid, b.rm->rmid, TMNOFLAGS);
  if (rc == XA_OK || rc == XA_RDONLY) {
    b.st = rc == XA_OK ? Branch::St::kPrepared : Branch::St::kDone;
    return true;
  }
  *why = "branch on \"" + b.rm->spec.name + "\" voted " + Describe(rc, tm_->RmError(b.rm));
  // XA_RB*: the RM rolled it back and forgot it. Anything else: it may be
  // prepared, so it is rolled back like a prepared branch.
  b.st = IsRollbackCode(rc) ? Branch::St::kDone : Branch::St::kPrepared;
  return false;
}

Outcome Transaction::PhaseOne(bool explicit_prepare, std::string* message) {
  tm_->Unregister(this);  // no timeout once the protocol runs
  std::string why;
  // xa_end on every branch.
  for (Branch& b : branches_) {
    if (b.st != Branch::St::kActive) continue;
    int rc = b.rm->sw->xa_end_entry(&b.xid, b.rm->rmid, TMSUCCESS);
    if (rc == XA_OK) {
      b.st = Branch::St::kEnded;
      continue;
    }
    why = "branch on \"" + b.rm->spec.name + "\" ended with " + Describe(rc, tm_->RmError(b.rm));
    // The RM has dissociated the branch and marked it rollback-only; it
    // forgets it at the xa_rollback that RollbackAll sends.
    if (IsRollbackCode(rc)) b.st = Branch::St::kEnded;
    break;
  }
  // SQLite branches that only read (the RM can tell before any vote) settle
  // first: their read-only vote ends their transaction. If one branch is
  // left, it commits in one phase.
  if (why.empty() && !explicit_prepare && branches_.size() >= 2) {
    for (Branch& b : branches_) {
      if (b.st != Branch::St::kEnded || b.rm->spec.type != RmSpec::Type::kSqlite ||
          sqlite::BranchHasWrites(b.rm->rmid)) {
        continue;
      }
      if (!Vote(b, &why)) break;
    }
  }
  Branch* only = nullptr;  // the one branch left to commit, if there is one
  int left = 0;
  for (Branch& b : branches_) {
    if (b.st == Branch::St::kDone) continue;
    ++left;
    if (b.st == Branch::St::kEnded) only = &b;
  }
  if (why.empty() && !explicit_prepare && left == 1 && only != nullptr) {
    // One branch: commit it in one phase, nothing to log.
    Branch& b = *only;
    const int rc = CommitOnePhase(b);
    if (rc == XA_OK) {
      b.st = Branch::St::kDone;
      state_ = State::kCommitted;
      one_phase_done_ = true;
      tm_->logger().info("{} committed in one phase on {}", ToHex(gtrid_), b.rm->spec.name);
      return Outcome::kOk;
    }
    if (IsRollbackCode(rc)) {
      b.st = Branch::St::kDone;
      state_ = State::kRolledBack;
      *message = "rolled back: the branch on \"" + b.rm->spec.name + "\" failed to commit: " +
                 Describe(rc, tm_->RmError(b.rm));
      tm_->logger().info("{} rolled back: {}", ToHex(gtrid_), *message);
      return Outcome::kRolledBack;
    }
    // The RM could not tell whether its one-phase commit happened.
    b.st = Branch::St::kDone;
    state_ = State::kCommitted;
    *message = "the outcome of the one-phase commit on \"" + b.rm->spec.name + "\" is unknown: " +
               Describe(rc, tm_->RmError(b.rm));
    tm_->logger().error("{} {}", ToHex(gtrid_), *message);
    return Outcome::kUnknown;
  }
  // xa_prepare on every branch (a vote), the last one ended first: an RM may
  // start work at xa_end (the PostgreSQL RM sends the query its vote needs),
  // which then overlaps the other branches' prepares.
  for (auto it = branches_.rbegin(); it != branches_.rend(); ++it) {
    Branch& b = *it;
    if (!why.empty()) break;
    if (b.st != Branch::St::kEnded) continue;
    XATM_CRASH_POINT("tm.prepare.before_branch");
    Vote(b, &why);
  }
  if (!why.empty()) {
    RollbackAll(message);
    *message = "rolled back: " + why + (message->empty() ? "" : "; " + *message);
    // A takeover ends the node's sessions on its databases: if that is why
    // a branch failed, say so (and the next transaction starts anew).
    if (Status s = tm_->store_->Verify(session_.get()); s.IsFenced()) {
      *message += "; " + s.message();
      tm_->logger().warn("{} {}", ToHex(gtrid_), *message);
      return Outcome::kFenced;
    }
    tm_->logger().info("{} {}", ToHex(gtrid_), *message);
    return Outcome::kRolledBack;
  }
  XATM_CRASH_POINT("tm.prepare.after_all");
  state_ = State::kPrepared;
  return Outcome::kOk;
}

Outcome Transaction::PhaseTwo(std::string* message) {
  std::vector<Branch*> writers;
  for (Branch& b : branches_) {
    if (b.st == Branch::St::kPrepared) writers.push_back(&b);
  }
  state_ = State::kCommitted;
  if (writers.empty()) return Outcome::kOk;  // every branch was read-only
  const std::string hex = ToHex(gtrid_);
  auto log_decision = [&]() -> Outcome {
    log::CommitRecord rec;
    rec.format_id = static_cast<int32_t>(kFormatId);
    rec.gtrid = gtrid_;
    rec.time_ms = log::NowMs();
    for (Branch* b : writers) rec.branches.push_back({b->rm->spec.name, std::string(rm::Bqual(b->xid))});
    Status s = tm_->store_->Commit(rec, session_.get());
    if (s.IsFenced()) {
      *message = s.message();
      return Outcome::kFenced;
    }
    if (s.IsUnknownOutcome()) {
      *message = "the decision log failed while recording the commit: " + s.message();
      tm_->logger().error("{} {}", hex, *message);
      return Outcome::kUnknown;
    }
    if (!s.ok()) {
      // Not written. A takeover (which ends the node's store sessions too)
      // is the likeliest reason: then say so.
      if (Status v = tm_->store_->Verify(session_.get()); v.IsFenced()) {
        *message = v.message();
        return Outcome::kFenced;
      }
      *message = s.message();
      return Outcome::kLogError;
    }
    // If we crash now, the commit is decided: recovery finishes phase two.
    XATM_CRASH_POINT("tm.commit.after_decision");
    tm_->logger().info("{} decided commit ({} prepared branches)", hex, writers.size());
    return Outcome::kOk;
  };
  bool logged = false;
  if (writers.size() >= 2) {
    Outcome o = log_decision();
    if (o == Outcome::kUnknown) return o;  // branches stay prepared: reopening settles it
    if (o == Outcome::kFenced) {
      // The store refused the decision (the session was ended): nothing is
      // committed; whoever ended it rolls the branches back (and so do we, to
      // free their locks now).
      const std::string why = *message;
      std::string rb;
      RollbackAll(&rb);
      *message = "rolled back, the decision refused: " + why;
      tm_->logger().error("{} {}", hex, *message);
      return Outcome::kFenced;
    }
    if (o == Outcome::kLogError) {
      std::string rb;
      RollbackAll(&rb);
      *message = "rolled back: the decision log could not record the commit: " + *message;
      tm_->logger().error("{} {}", hex, *message);
      return Outcome::kRolledBack;
    }
    logged = true;
  }
  {
    std::lock_guard<std::mutex> l(tm_->mu_);
    tm_->in_flight_.insert(gtrid_);
  }
  std::vector<Branch*> left;
  Outcome worst = Outcome::kOk;
  if (logged && tm_->cfg_.background_phase_two) {
    // SQLite branches now (their transactions are open on this thread), the
    // others in the background.
    std::vector<Branch*> now, later;
    for (Branch* b : writers) (b->rm->spec.type == RmSpec::Type::kSqlite ? now : later).push_back(b);
    worst = FinishWriters(now, &left, message, /*decided=*/true);
    TransactionManager::Handoff h;
    h.gtrid = gtrid_;
    for (Branch* b : later) h.branches.push_back({b->rm, b->xid, true, gtrid_});
    if (left.empty() && worst == Outcome::kOk && !later.empty() && tm_->HandOff(std::move(h))) {
      for (Branch* b : later) b->st = Branch::St::kDone;
      // If we crash now, the commit is decided: recovery finishes phase two.
      XATM_CRASH_POINT("tm.commit.handed_off");
      tm_->logger().info("{} committed ({} branch(es) finishing in the background)", hex, later.size());
      return Outcome::kOk;
    }
    const Outcome rest = FinishWriters(later, &left, message, /*decided=*/true);
    if (worst == Outcome::kOk) worst = rest;
  } else {
    worst = FinishWriters(writers, &left, message, logged);
  }
  if (!left.empty()) {
    if (!logged) {
      // A single prepared branch that cannot be reached: record the decision
      // now, so that recovery commits it instead of presuming abort.
      Outcome o = log_decision();
      if (o == Outcome::kFenced) return o;
      if (o != Outcome::kOk) return Outcome::kUnknown;
      logged = true;
    }
    {
      std::lock_guard<std::mutex> l(tm_->mu_);
      tm_->in_flight_.erase(gtrid_);
      tm_->pending_.insert(gtrid_);
    }
    for (Branch* b : left) tm_->AddLeftover({b->rm, b->xid, true, gtrid_});
    tm_->logger().warn("{} committed, {} branch(es) still to finish (retried in the background): {}", hex,
                       left.size(), *message);
    return worst == Outcome::kOk ? Outcome::kPending : worst;
  }
  if (logged) {
    XATM_CRASH_POINT("tm.commit.before_end");
    tm_->RecordEnd(gtrid_);  // a lost END is redone by recovery
    XATM_CRASH_POINT("tm.commit.after_end");
  }
  {
    std::lock_guard<std::mutex> l(tm_->mu_);
    tm_->in_flight_.erase(gtrid_);
  }
  tm_->logger().info("{} committed ({} branches)", hex, writers.size());
  return worst;
}

Outcome Transaction::FinishWriters(const std::vector<Branch*>& writers, std::vector<Branch*>* left,
                                   std::string* message, bool decided) {
  const auto deadline = Clock::now() + std::chrono::seconds(tm_->cfg_.commit_retry_s);
  Outcome worst = Outcome::kOk;
  for (Branch* b : writers) {
    std::string m;
    XATM_CRASH_POINT("tm.commit.before_branch");
    bool vanished = false;
    int rc = tm_->FinishBranch(b->rm, b->xid, /*commit=*/true, deadline, &m, &vanished);
    if (rc == XA_OK && vanished && !decided) {
      // The reply to our COMMIT was lost and then the branch was gone. With no
      // decision recorded, another resolver (a takeover of a session it
      // thought dead) would have rolled it back: committed only if nobody
      // else could have finished it.
      if (Status s = tm_->store_->ConfirmSoleResolver(gtrid_, session_.get()); !s.ok()) {
        const std::string what = "branch on \"" + b->rm->spec.name +
                                 "\": its COMMIT's reply was lost and the branch was then finished by someone "
                                 "else; whether it committed is unknown (" + s.message() + ")";
        tm_->LogHeuristic(gtrid_, b->rm, b->xid, XA_HEURHAZ, "xatm", what);
        *message += (message->empty() ? "" : "; ") + what;
        b->st = Branch::St::kDone;
        worst = Outcome::kUnknown;
        continue;
      }
    }
    if (rc == XA_OK || rc == XA_HEURCOM) {
      if (rc == XA_HEURCOM) b->rm->sw->xa_forget_entry(&b->xid, b->rm->rmid, TMNOFLAGS);
      b->st = Branch::St::kDone;
      continue;
    }
    if (rc == XA_HEURMIX || rc == XA_HEURHAZ || rc == XA_HEURRB || rc == XAER_NOTA) {
      // XAER_NOTA at the first attempt: the prepared branch vanished; nobody
      // can say how it ended.
      int code = rc == XAER_NOTA ? XA_HEURHAZ : rc;
      tm_->LogHeuristic(gtrid_, b->rm, b->xid, code, "xatm", m);
      Outcome o = code == XA_HEURMIX ? Outcome::kHeurMix : code == XA_HEURRB ? Outcome::kHeurRb : Outcome::kHeurHaz;
      if (worst == Outcome::kOk || o == Outcome::kHeurMix) worst = o;
      *message += (message->empty() ? "" : "; ") + ("branch on \"" + b->rm->spec.name + "\": " + Describe(code, m));
      b->st = Branch::St::kDone;
      continue;
    }
    left->push_back(b);
    *message += (message->empty() ? "" : "; ") + ("branch on \"" + b->rm->spec.name + "\" not committed yet: " + m);
  }
  return worst;
}

namespace {

// Writes the decision row for gtrid, and deletes the rows in `finished`,
// inside the open transaction of a PostgreSQL branch. "" or why not.
// In the same round trip the RM reads the branch's transaction id, which its
// one-phase commit would otherwise ask for in one of its own.
std::string WritePgDecisionRow(int rmid, const std::string& gtrid, const std::vector<std::string>& finished) {
  // Its COMMIT is the commit point: it waits for the WAL flush (and the
  // synchronous standbys) whatever the role or database set; stronger
  // settings (remote_write, remote_apply) are kept.
  std::string sql =
      "SELECT set_config('synchronous_commit', 'on', true) WHERE current_setting('synchronous_commit') IN "
      "('off', 'local'); INSERT INTO xatm.decision (gtrid, decided_at) VALUES (" + PgBytea(gtrid) + ", " +
      std::to_string(log::NowMs() / 1000) + ")";
  if (!finished.empty()) sql += "; DELETE FROM xatm.decision WHERE gtrid IN (" + PgByteaList(finished) + ")";
  return pgsql::ExecInBranch(rmid, sql);
}

}  // namespace

// Last-resource commit: the branch `last` is committed in one phase, after
// every other branch is prepared, with the decision row inside its own
// transaction. That COMMIT is the commit point.
Outcome Transaction::CommitWithLastResource(Branch* last, std::string* message) {
  tm_->Unregister(this);
  const std::string hex = ToHex(gtrid_);
  const bool pg_last = last->rm->spec.type == RmSpec::Type::kPostgres;
  std::vector<std::string> finished = tm_->TakeFinishedDecisions(last->rm);
  auto requeue = [&] {
    std::lock_guard<std::mutex> l(tm_->mu_);
    auto& q = tm_->finished_decisions_[last->rm];
    q.insert(q.end(), finished.begin(), finished.end());
  };
  auto roll_back = [&](const std::string& why) {
    std::string m;
    RollbackAll(&m);
    requeue();
    *message = "rolled back: " + why + (m.empty() ? "" : "; " + m);
    tm_->logger().info("{} {}", hex, *message);
    return Outcome::kRolledBack;
  };
  // 1. The decision row, and the removal of rows no longer needed, in the
  //    last branch: they commit exactly when it does.
  if (pg_last) {
    const std::string why = WritePgDecisionRow(last->rm->rmid, gtrid_, finished);
    if (!why.empty()) return roll_back("cannot write the decision row: " + why);
  } else {
    const std::string why = sqlite::WriteDecisionRow(last->rm->rmid, gtrid_, log::NowMs() / 1000, finished);
    if (!why.empty()) return roll_back("cannot write the decision row: " + why);
  }
  // 2. Phase one of the others.
  for (Branch& b : branches_) {
    if (b.st != Branch::St::kActive) continue;
    int rc = b.rm->sw->xa_end_entry(&b.xid, b.rm->rmid, TMSUCCESS);
    if (rc != XA_OK) {
      return roll_back("branch on \"" + b.rm->spec.name + "\" ended with " + Describe(rc, tm_->RmError(b.rm)));
    }
    b.st = Branch::St::kEnded;
  }
  for (Branch& b : branches_) {
    if (&b == last || b.st != Branch::St::kEnded) continue;
    if (std::string why; !Vote(b, &why)) return roll_back(why);
  }
  XATM_CRASH_POINT("tm.lrc.before_last");
  // 3. The commit point.
  const int rc = CommitOnePhase(*last);
  if (rc != XA_OK) {
    if (IsRollbackCode(rc)) last->st = Branch::St::kDone;
    const std::string why = "the last resource \"" + last->rm->spec.name + "\" did not commit: " +
                            Describe(rc, tm_->RmError(last->rm));
    // A SQLite COMMIT ran in this process: its row is there or not. A
    // PostgreSQL one the RM could not settle may still be running.
    if (IsRollbackCode(rc) ||
        (!pg_last && tm_->LastResourceDecided(gtrid_, nullptr, nullptr, /*fenced=*/false) == 0)) {
      return roll_back(why);
    }
    // Whether it committed cannot be told now: the decision row settles it at recovery.
    state_ = State::kCommitted;
    *message = why + "; its outcome is unknown until recovery";
    tm_->logger().error("{} {}", hex, *message);
    return Outcome::kUnknown;
  }
  last->st = Branch::St::kDone;
  if (pg_last) ++last->rm->rows_since_vacuum;
  // If we crash now, the commit is decided: the decision row is durable in
  // SQLite, and recovery commits the other branches.
  XATM_CRASH_POINT("tm.lrc.after_last");
  state_ = State::kCommitted;
  std::vector<Branch*> writers;
  for (Branch& b : branches_) {
    if (b.st == Branch::St::kPrepared) writers.push_back(&b);
  }
  if (tm_->cfg_.background_phase_two && !writers.empty()) {
    TransactionManager::Handoff h;
    h.gtrid = gtrid_;
    h.decision_rm = last->rm;
    for (Branch* b : writers) h.branches.push_back({b->rm, b->xid, true, gtrid_});
    if (tm_->HandOff(std::move(h))) {
      for (Branch* b : writers) b->st = Branch::St::kDone;
      // If we crash now, the commit is decided: recovery finds the row.
      XATM_CRASH_POINT("tm.lrc.handed_off");
      tm_->logger().info("{} committed (last resource {}, {} branch(es) finishing in the background)", hex,
                         last->rm->spec.name, writers.size());
      return Outcome::kOk;
    }
  }
  std::vector<Branch*> left;
  const Outcome worst = FinishWriters(writers, &left, message, /*decided=*/true);
  if (!left.empty()) {
    {
      std::lock_guard<std::mutex> l(tm_->mu_);
      tm_->pending_rows_[gtrid_] = last->rm;
    }
    for (Branch* b : left) tm_->AddLeftover({b->rm, b->xid, true, gtrid_});
    tm_->logger().warn("{} committed (last resource), {} branch(es) still to finish: {}", hex, left.size(), *message);
    return worst == Outcome::kOk ? Outcome::kPending : worst;
  }
  tm_->ForgetDecision(last->rm, gtrid_);
  tm_->logger().info("{} committed ({} branches, last resource {})", hex, branches_.size(), last->rm->spec.name);
  return worst;
}

Outcome Transaction::Prepare(std::string* message) {
  std::lock_guard<std::mutex> l(mu_);
  if (Outcome o = CheckThread(message); o != Outcome::kOk) return o;
  if (state_ != State::kActive) {
    *message = "xatm_prepare: the transaction is already prepared or finished";
    return Outcome::kInvalid;
  }
  if (timed_out_) {
    RollbackAll(message);
    *message = "rolled back: the transaction outlived its timeout";
    return Outcome::kTimedOut;
  }
  return PhaseOne(/*explicit_prepare=*/true, message);
}

Outcome Transaction::Commit(std::string* message) {
  const Outcome o = CommitImpl(message);
  if (o == Outcome::kUnknown) {
    // Branches prepared in this thread's own connections (SQLite) stay with
    // it: the next Begin asks the store how it ended and finishes them here,
    // holding their locks, before anything else can touch their rows.
    for (const Branch& b : branches_) {
      if (b.st == Branch::St::kPrepared && b.rm->spec.type == RmSpec::Type::kSqlite) {
        tls_rms.in_doubt.push_back({tm_, b.rm, b.xid, gtrid_});
      }
    }
  }
  switch (o) {
    case Outcome::kOk:
    case Outcome::kPending:
    case Outcome::kHeurMix:
    case Outcome::kHeurHaz:
    case Outcome::kHeurRb: ++tm_->committed_; break;
    case Outcome::kRolledBack:
    case Outcome::kTimedOut:
    case Outcome::kFenced: ++tm_->rolled_back_; break;
    default: break;
  }
  // One line per decision, at info (off by default: a library is quiet).
  if (tm_->logger().should_log(spdlog::level::info)) {
    tm_->logger().info("{} {} ({} branch(es)){}{}", ToHex(gtrid_),
                       OutcomeName(o), branches_.size(),
                       message->empty() ? "" : ": ", *message);
  }
  return o;
}

Outcome Transaction::CommitImpl(std::string* message) {
  std::lock_guard<std::mutex> l(mu_);
  if (Outcome o = CheckThread(message); o != Outcome::kOk) return o;
  if (state_ == State::kCommitted || state_ == State::kRolledBack) {
    *message = "xatm_commit: the transaction is already finished";
    return Outcome::kInvalid;
  }
  if (timed_out_) {
    RollbackAll(message);
    *message = "rolled back: the transaction outlived its timeout of " + std::to_string(tm_->cfg_.timeout_s) + " s";
    return Outcome::kTimedOut;
  }
  // A session the store has ended (xatmd's heartbeats found out) decides
  // nothing more: nothing of this transaction is decided yet, so it rolls
  // back before any commit point.
  if (state_ == State::kActive) {
    if (Status s = session_->Check(); !s.ok()) {
      std::string rb;
      RollbackAll(&rb);
      *message = "rolled back: " + s.message();
      tm_->logger().warn("{} {}", ToHex(gtrid_), *message);
      return Outcome::kFenced;
    }
  }
  if (state_ == State::kActive && tm_->cfg_.last_resource_commit != TmConfig::LastResource::kNone &&
      branches_.size() >= 2) {
    // The SQLite branch if there is exactly one (its commit is in-process:
    // nothing is left running if we die), else the last-joined PostgreSQL one
    // whose database has the decision table (last_resource_commit = true).
    Branch* last = nullptr;
    int sqlite_branches = 0;
    for (Branch& b : branches_) {
      if (b.rm->spec.type == RmSpec::Type::kSqlite && b.st == Branch::St::kActive) {
        last = &b;
        ++sqlite_branches;
      }
    }
    // A SQLite branch that only read would write its decision row for
    // nothing: it votes read-only among the others instead.
    if (sqlite_branches != 1 || !sqlite::BranchHasWrites(last->rm->rmid)) {
      last = nullptr;
      for (auto it = branches_.rbegin(); it != branches_.rend() && last == nullptr; ++it) {
        if (it->rm->spec.type == RmSpec::Type::kPostgres && it->rm->decision_table &&
            it->st == Branch::St::kActive && it->native != nullptr &&
            !ReadOnlySession(static_cast<PGconn*>(it->native))) {
          last = &*it;
        }
      }
    }
    if (last != nullptr) return CommitWithLastResource(last, message);
  }
  if (state_ == State::kActive) {
    Outcome o = PhaseOne(/*explicit_prepare=*/false, message);
    if (o != Outcome::kOk || one_phase_done_) return o;
  }
  return PhaseTwo(message);
}

Outcome Transaction::Rollback(std::string* message) {
  std::lock_guard<std::mutex> l(mu_);
  tm_->Unregister(this);
  if (state_ == State::kRolledBack) return Outcome::kOk;
  if (state_ == State::kCommitted) {
    *message = "xatm_rollback: the transaction is already committed";
    return Outcome::kInvalid;
  }
  if (Outcome o = CheckThread(message); o != Outcome::kOk) return o;
  RollbackAll(message);
  ++tm_->rolled_back_;
  tm_->logger().debug("{} rolled back by the application", ToHex(gtrid_));
  return message->empty() ? Outcome::kOk : Outcome::kRmError;
}

// REQUIRES: mu_ held (by the reaper).
void Transaction::AbortForTimeout() {
  timed_out_ = true;
  for (Branch& b : branches_) {
    if (b.st != Branch::St::kActive && b.st != Branch::St::kEnded) continue;
    if (b.rm->spec.type == RmSpec::Type::kSqlite && b.native) {
      sqlite::AbortBranchOf(static_cast<sqlite3*>(b.native));
    } else if (b.rm->spec.type == RmSpec::Type::kPostgres && b.native) {
      // End the branch's session: PostgreSQL rolls its transaction back and
      // frees its row locks; the owner's next call finds the connection gone.
      int pid = PQbackendPID(static_cast<PGconn*>(b.native));
      PGconn* c = PQconnectdb(b.rm->plain_info.c_str());
      if (PQstatus(c) == CONNECTION_OK && pid > 0) {
        PQclear(PQexec(c, ("SELECT pg_terminate_backend(" + std::to_string(pid) + ")").c_str()));
      }
      PQfinish(c);
    }
  }
  tm_->logger().warn("{} rolled back: open longer than timeout_s = {}", ToHex(gtrid_), tm_->cfg_.timeout_s);
}

Status TransactionManager::EnsureDecisionTable(Rm* rm) {
  PGconn* own;
  PGconn* c = FreeConnection(rm, &own);
  if (PQstatus(c) == CONNECTION_OK && ReadOnlySession(c)) {
    if (own) PQfinish(own);
    logger_->info("\"{}\" is read-only by default: it is never the last resource", rm->spec.name);
    return Status::OK();
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
    return Status::InvalidArgument(
        "last_resource_commit = true needs the table xatm.decision in the database of \"" + rm->spec.name +
        "\", and it cannot be created: " + why +
        ". Create it once as a user who may (CREATE SCHEMA xatm; CREATE TABLE xatm.decision (gtrid bytea "
        "PRIMARY KEY, decided_at bigint NOT NULL); then grant SELECT, INSERT, DELETE on it and USAGE on the "
        "schema), or set last_resource_commit = sqlite (only a SQLite branch commits last) or "
        "last_resource_commit = false");
  }
  rm->decision_table = true;
  return Status::OK();
}

const std::set<std::string>* TransactionManager::CachedDecisionRows(Rm* rm, DecisionRows* rows) {
  auto it = rows->by_rm.find(rm);
  if (it == rows->by_rm.end()) {
    // Every row at once: the tables hold only unfinished decisions.
    std::set<std::string> all;
    const bool read = ReadDecisionRows(rm, &all) == 0;
    it = rows->by_rm.emplace(rm, read ? std::optional<std::set<std::string>>(std::move(all)) : std::nullopt).first;
  }
  return it->second ? &*it->second : nullptr;
}

namespace {

// How long a resolver waits for a lock held by a transaction that may be
// committing a decision row before it leaves the transaction in doubt.
constexpr int kFenceWaitMs = 2000;

}  // namespace

int TransactionManager::ReadDecisionRows(Rm* rm, std::set<std::string>* out, const std::string* only) {
  if (rm->spec.type == RmSpec::Type::kSqlite) {
    std::string why;
    const int r = sqlite::ReadDecisionRows(rm->spec.path, rm->spec.busy_timeout_ms >= 0 ? rm->spec.busy_timeout_ms : 5000,
                                           /*locked=*/false, only, out, &why);
    if (r < 0) logger_->info("decision rows of {}: {}", rm->spec.name, why);
    return r;
  }
  if (rm->spec.type != RmSpec::Type::kPostgres) return 0;
  PGconn* own;
  PGconn* c = FreeConnection(rm, &own);
  std::string sql = "SELECT encode(gtrid, 'hex') FROM xatm.decision";
  if (only) sql += " WHERE gtrid = " + PgBytea(*only);
  PGresult* r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql.c_str()) : nullptr;
  int result = -1;
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i) {
      std::string g;
      if (FromHex(PQgetvalue(r, i, 0), &g)) out->insert(std::move(g));
    }
    result = 0;
  } else if (NoDecisionTable(r)) {
    result = 0;  // no decision here
  }
  PQclear(r);
  if (own) PQfinish(own);
  return result;
}

int TransactionManager::FencedDecisionRow(Rm* rm, const std::string& gtrid, DecisionRows* rows, std::string* why) {
  if (rm->spec.type == RmSpec::Type::kSqlite) {
    // One read under the write lock per pass: every gtrid asked about was seen
    // prepared before it, so their last resources' transactions had begun.
    std::optional<std::set<std::string>> fresh;
    std::optional<std::set<std::string>>* read = &fresh;
    auto it = rows ? rows->locked.find(rm) : std::map<const Rm*, std::optional<std::set<std::string>>>::iterator();
    if (rows && it != rows->locked.end()) {
      read = &it->second;
    } else {
      std::set<std::string> all;
      const int busy = std::min(kFenceWaitMs, rm->spec.busy_timeout_ms >= 0 ? rm->spec.busy_timeout_ms : 5000);
      if (sqlite::ReadDecisionRows(rm->spec.path, busy, /*locked=*/true, nullptr, &all, why) == 0) {
        fresh = std::move(all);
      }
      if (rows) read = &(rows->locked[rm] = std::move(fresh));
    }
    if (!read->has_value()) {
      if (why->empty()) *why = "the decision rows could not be read under the write lock of " + rm->spec.path;
      return -1;
    }
    return (*read)->count(gtrid) ? 1 : 0;
  }
  if (rm->spec.type != RmSpec::Type::kPostgres) return 0;
  // Inserting the same key waits for a transaction that inserted it and has
  // not ended, then conflicts (it committed) or not (it never will): a
  // commit in flight cannot slip past. Rolled back: nothing is written.
  PGconn* own;
  PGconn* c = FreeConnection(rm, &own);
  int result = -1;
  if (PQstatus(c) != CONNECTION_OK) {
    *why = rm->spec.name + ": " + PgMessage(c, nullptr);
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
          if (result < 0) *why = rm->spec.name + ": " + PgMessage(c, r);
        }
        PQclear(r);
      }
    } else {
      *why = rm->spec.name + ": " + PgMessage(c, nullptr);
    }
    if (PQtransactionStatus(c) != PQTRANS_IDLE) PQclear(PQexec(c, "ROLLBACK"));
  }
  if (own) PQfinish(own);
  return result;
}

int TransactionManager::LastResourceDecided(const std::string& gtrid, Rm** where, DecisionRows* rows, bool fenced,
                                            const std::set<const Rm*>* prepared_in) {
  int result = 0;
  for (auto& rm : rms_) {
    if (rm->spec.type != RmSpec::Type::kPostgres && rm->spec.type != RmSpec::Type::kSqlite) continue;
    int d;
    if (rows != nullptr) {
      const std::set<std::string>* all = CachedDecisionRows(rm.get(), rows);
      d = all == nullptr ? -1 : static_cast<int>(all->count(gtrid));
    } else {
      std::set<std::string> one;
      d = ReadDecisionRows(rm.get(), &one, &gtrid) < 0 ? -1 : static_cast<int>(one.size());
    }
    if (d != 1 && fenced && !(prepared_in && prepared_in->count(rm.get()))) {
      // Not seen committed: ask again in a way no commit in flight can slip past.
      std::string why;
      d = FencedDecisionRow(rm.get(), gtrid, rows, &why);
      if (d < 0) logger_->info("{}: decision of {} unknown for now: {}", rm->spec.name, ToHex(gtrid), why);
    }
    if (d == 1) {
      if (where) *where = rm.get();
      return 1;
    }
    if (d < 0) result = -1;
  }
  return result;
}

void TransactionManager::ForgetDecision(Rm* rm, const std::string& gtrid) {
  std::lock_guard<std::mutex> l(mu_);
  finished_decisions_[rm].push_back(gtrid);
}

std::vector<std::string> TransactionManager::TakeFinishedDecisions(Rm* rm) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  auto it = finished_decisions_.find(rm);
  if (it == finished_decisions_.end()) return out;
  std::vector<std::string>& q = it->second;
  const size_t n = std::min<size_t>(q.size(), 64);
  out.assign(q.end() - static_cast<long>(n), q.end());
  q.resize(q.size() - n);
  return out;
}

bool TransactionManager::HandOff(Handoff&& h) {
  std::lock_guard<std::mutex> l(mu_);
  if (handoffs_.size() >= kPhaseTwoQueue) return false;  // busy: the caller does it
  handoffs_.push_back(std::move(h));
  phase_two_cv_.notify_one();
  return true;
}

void TransactionManager::StopPhaseTwo() {
  if (phase_two_.empty()) return;
  {
    std::unique_lock<std::mutex> l(mu_);
    drained_cv_.wait(l, [&] { return handoffs_.empty() && handoffs_busy_ == 0; });
    phase_two_stopping_ = true;
  }
  phase_two_cv_.notify_all();
  for (std::thread& t : phase_two_) t.join();
  phase_two_.clear();
}

// On a phase-two thread (its own RM connections).
void TransactionManager::PhaseTwoLoop() {
  for (;;) {
    Handoff h;
    {
      std::unique_lock<std::mutex> l(mu_);
      phase_two_cv_.wait(l, [&] { return phase_two_stopping_ || !handoffs_.empty(); });
      if (handoffs_.empty()) return;
      h = std::move(handoffs_.front());
      handoffs_.pop_front();
      ++handoffs_busy_;
    }
    const auto deadline = Clock::now() + std::chrono::seconds(cfg_.commit_retry_s);
    bool all = true;
    for (Leftover& b : h.branches) {
      std::string m;
      XATM_CRASH_POINT("tm.background.before_commit");
      int rc = FinishBranch(b.rm, b.xid, /*commit=*/true, deadline, &m);
      if (rc == XA_OK) continue;
      if (rc == XA_HEURCOM) {
        b.rm->sw->xa_forget_entry(&b.xid, b.rm->rmid, TMNOFLAGS);
        continue;
      }
      if (rc == XA_HEURMIX || rc == XA_HEURHAZ || rc == XA_HEURRB || rc == XAER_NOTA) {
        LogHeuristic(h.gtrid, b.rm, b.xid, rc == XAER_NOTA ? XA_HEURHAZ : rc, "xatm", m);
        continue;
      }
      logger_->warn("{} branch on {} not committed yet: {}; retrying", ToHex(h.gtrid), b.rm->spec.name, m);
      AddLeftover(b);
      all = false;
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      in_flight_.erase(h.gtrid);
      if (!all && h.decision_rm != nullptr) pending_rows_[h.gtrid] = h.decision_rm;
      if (!all && h.decision_rm == nullptr) pending_.insert(h.gtrid);
      // Only a stop waits for the drain; waking the other phase-two
      // threads here would cost each transaction a futile wake-up.
      if (--handoffs_busy_ == 0 && handoffs_.empty()) drained_cv_.notify_all();
    }
    if (all) Finished(h.gtrid, h.decision_rm);
  }
}

void TransactionManager::Finished(const std::string& gtrid, Rm* decision_rm) {
  if (decision_rm != nullptr) {
    ForgetDecision(decision_rm, gtrid);
  } else {
    RecordEnd(gtrid);
  }
}

void TransactionManager::AddLeftover(Leftover l) {
  std::lock_guard<std::mutex> g(mu_);
  leftovers_.push_back(std::move(l));
}

// On the reaper thread (its own RM connections), without mu_.
void TransactionManager::RetryLeftovers() {
  std::vector<Leftover> work;
  {
    std::lock_guard<std::mutex> l(mu_);
    work.swap(leftovers_);
  }
  if (work.empty()) return;
  std::vector<Leftover> again;
  std::set<std::string> touched;
  for (Leftover& w : work) {
    std::string m;
    int rc = FinishBranch(w.rm, w.xid, w.commit, Clock::now(), &m);
    if (rc == XA_OK || rc == XAER_NOTA || (!w.commit && IsRollbackCode(rc))) {
      logger_->info("{} branch on {} {} in the background", ToHex(w.gtrid), w.rm->spec.name,
                    w.commit ? "committed" : "rolled back");
      if (w.commit) touched.insert(w.gtrid);
    } else {
      again.push_back(std::move(w));
    }
  }
  std::vector<std::pair<std::string, Rm*>> finished;
  {
    std::lock_guard<std::mutex> l(mu_);
    leftovers_.insert(leftovers_.end(), again.begin(), again.end());
    for (const std::string& g : touched) {
      bool left = false;
      for (const Leftover& w : leftovers_) left = left || (w.commit && w.gtrid == g);
      if (left) continue;
      if (pending_.erase(g)) finished.emplace_back(g, nullptr);
      if (auto it = pending_rows_.find(g); it != pending_rows_.end()) {
        finished.emplace_back(g, it->second);
        pending_rows_.erase(it);
      }
    }
  }
  for (const auto& [g, rm] : finished) Finished(g, rm);
}

void TransactionManager::ReaperLoop() {
  std::unique_lock<std::mutex> l(mu_);
  auto next_retry = Clock::now();
  auto next_vacuum = Clock::now();
  while (!stopping_) {
    reaper_cv_.wait_for(l, std::chrono::milliseconds(200));
    if (stopping_) break;
    store_->ReportCounters(counters());
    if (!leftovers_.empty() && Clock::now() >= next_retry) {
      l.unlock();
      RetryLeftovers();
      l.lock();
      next_retry = Clock::now() + std::chrono::seconds(1);
    }
    if (Clock::now() >= next_vacuum) {
      l.unlock();
      for (auto& rm : rms_) {
        if (rm->decision_table && rm->rows_since_vacuum >= kVacuumEveryRows) VacuumDecisionTable(rm.get());
      }
      l.lock();
      next_vacuum = Clock::now() + kVacuumInterval;
    }
    const auto now = Clock::now();
    for (auto it = active_.begin(); it != active_.end();) {
      Transaction* tx = *it;
      if (tx->deadline_ > now) {
        ++it;
        continue;
      }
      // The owner may be inside a call; then try again at the next tick.
      std::unique_lock<std::mutex> txl(tx->mu_, std::try_to_lock);
      if (!txl.owns_lock()) {
        ++it;
        continue;
      }
      if (tx->state_ == Transaction::State::kActive && !tx->timed_out_) tx->AbortForTimeout();
      it = active_.erase(it);
    }
  }
}

// ---------------------------------------------------------------------------
// Phase two and recovery

int TransactionManager::FinishBranch(Rm* rm, const XID& xid_in, bool commit, Clock::time_point deadline,
                                     std::string* message, bool* vanished) {
  XID xid = xid_in;
  bool attempted = false;
  auto backoff = std::chrono::milliseconds(10);
  for (;;) {
    std::string m;  // EnsureOpen's message already names the code
    int rc = EnsureOpen(rm, &m);
    if (rc == XA_OK) {
      rc = commit ? rm->sw->xa_commit_entry(&xid, rm->rmid, TMNOFLAGS)
                  : rm->sw->xa_rollback_entry(&xid, rm->rmid, TMNOFLAGS);
      m = Describe(rc, RmError(rm));
    }
    if (rc == XA_OK) return XA_OK;
    if (rc == XAER_NOTA && attempted) {
      // An earlier attempt did it, or someone else: only callers that know
      // nobody else may finish it can tell (see ConfirmSoleResolver).
      if (vanished) *vanished = true;
      return XA_OK;
    }
    *message = m;
    if (!tls_rms.open.count(rm->rmid)) rc = XAER_RMFAIL;  // could not even open: the RM is down
    if (rc == XAER_NOTA || rc == XA_HEURCOM || rc == XA_HEURRB || rc == XA_HEURMIX || rc == XA_HEURHAZ) return rc;
    if (!commit && IsRollbackCode(rc)) return XA_OK;
    if (rc != XAER_RMFAIL && rc != XA_RETRY) return rc;
    if (Clock::now() >= deadline) return rc;
    if (rc == XAER_RMFAIL) {
      attempted = true;
      std::string rm_msg;
      Reopen(rm, &rm_msg);
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

void TransactionManager::LogHeuristic(const std::string& gtrid, const Rm* rm, const XID& xid, int code,
                                      const std::string& who, const std::string& why,
                                      const std::function<Status(const log::HeuristicRecord&)>* to) {
  log::HeuristicRecord h;
  h.format_id = static_cast<int32_t>(xid.formatID);
  h.gtrid = gtrid;
  h.rm = rm ? rm->spec.name : "";
  h.bqual = std::string(rm::Bqual(xid));
  h.outcome = code == XA_HEURCOM   ? log::HeuristicOutcome::kCommitted
              : code == XA_HEURRB  ? log::HeuristicOutcome::kRolledBack
              : code == XA_HEURMIX ? log::HeuristicOutcome::kMixed
                                   : log::HeuristicOutcome::kHazard;
  h.who = who;
  h.why = why;
  h.time_ms = log::NowMs();
  Status s = to ? (*to)(h) : store_->Heuristic(h);
  logger_->error("{} heuristic outcome on {}: {} ({}){}", ToHex(gtrid), h.rm, log::HeuristicOutcomeName(h.outcome),
                 why, s.ok() ? "" : "; not recorded: " + s.message());
}

LiveSet TransactionManager::Live() const {
  if (live_hook_) return live_hook_();
  LiveSet l;
  l.max = incarnation();
  l.live.insert(incarnation());
  return l;
}

bool TransactionManager::FenceDeadSessions(Rm* rm, const std::string& node_id, const LiveSet& live,
                                           RecoveryReport* report, std::string* why) {
  PGconn* c = PQconnectdb(rm->plain_info.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    *why = PgMessage(c, nullptr);
    PQfinish(c);
    return false;
  }
  // The backends that dead incarnations registered (pid and start time: the
  // application cannot change them), and, for those whose registrations are
  // gone (a restarted server's earlier sessions), the sessions tagged with a
  // dead incarnation (xatm/<node>/<incarnation>, by OpenRms).
  std::string prefix = "xatm/";
  prefix += ToHex(node_id);
  prefix += '/';
  std::string live_list;
  for (uint32_t i : live.live) {
    if (!live_list.empty()) live_list += ',';
    live_list += std::to_string(i);
  }
  const std::string inc = "split_part(application_name, '/', 3)";
  std::string where = "application_name LIKE '" + prefix + "%' AND " + inc + " ~ '^[0-9]{1,10}$' AND " + inc +
                      "::bigint <= " + std::to_string(live.max);
  if (!live_list.empty()) where += " AND " + inc + "::bigint NOT IN (" + live_list + ")";
  for (const BackendId& b : live.dead_backends) {
    if (b.rm != rm->spec.name || b.pid <= 0) continue;
    char* start = PQescapeLiteral(c, b.start.data(), b.start.size());
    if (start == nullptr) continue;
    where += " OR (pid = " + std::to_string(b.pid) + " AND backend_start = " + start + "::timestamptz)";
    PQfreemem(start);
  }
  where = "(" + where + ") AND pid <> pg_backend_pid()";
  PGresult* r = PQexec(c, ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE " + where).c_str());
  int killed = PQresultStatus(r) == PGRES_TUPLES_OK ? std::atoi(PQgetvalue(r, 0, 0)) : 0;
  PQclear(r);
  if (killed > 0) {
    report->actions.push_back("ended " + std::to_string(killed) + " session(s) of earlier incarnations on " +
                              rm->spec.name);
    logger_->info("recovery: ending {} session(s) of earlier incarnations on {}", killed, rm->spec.name);
  }
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

namespace {

// Every XID rm reports prepared. False if the scan failed.
bool ScanRm(TransactionManager* tm, Rm* rm, std::vector<XID>* out, std::string* message) {
  out->clear();
  for (int attempt = 0; attempt < 2; ++attempt) {
    int rc = tm->EnsureOpen(rm, message);
    if (rc != XA_OK) return false;
    std::vector<XID> batch(64);
    long flags = TMSTARTRSCAN;
    bool ok = true;
    out->clear();
    for (;;) {
      int n = rm->sw->xa_recover_entry(batch.data(), static_cast<long>(batch.size()), rm->rmid, flags);
      if (n < 0) {
        *message = Describe(n, tm->RmError(rm));
        ok = false;
        if (n == XAER_RMFAIL) tm->Reopen(rm, message);
        break;
      }
      out->insert(out->end(), batch.begin(), batch.begin() + n);
      if (n < static_cast<int>(batch.size())) break;
      flags = TMNOFLAGS;
    }
    rm->sw->xa_recover_entry(batch.data(), 0, rm->rmid, TMENDRSCAN);
    if (ok) return true;
  }
  return false;
}

}  // namespace

Status TransactionManager::Recover(bool dry_run, RecoveryReport* report) {
  *report = RecoveryReport();
  if (options_.read_only && !dry_run) return Status::InvalidArgument("opened read-only: recovery can only be planned");
  if (store_->RecoversElsewhere()) return store_->Recover(dry_run, report);
  Scope scope;
  scope.node_id = node_id();
  scope.name = store_->node_name();
  scope.own_incarnation = incarnation();
  // Who is live is looked at before the log: a session that dies after the
  // look is left alone this time, and a dead one can add no decision.
  scope.live = Live();
  std::vector<log::BackendEntry> registered;
  if (store_->LoadBackends(&registered).ok()) {
    for (const log::BackendEntry& e : registered) {
      if (!scope.live.Live(e.incarnation)) scope.live.dead_backends.push_back(BackendId{e.rm, e.pid, e.start});
    }
  }
  if (Status s = store_->State(&scope.st); !s.ok()) return s;
  {
    std::lock_guard<std::mutex> l(mu_);
    scope.skip = in_flight_;
  }
  scope.end = [this](const std::string& gtrid) {
    RecordEnd(gtrid);
    std::lock_guard<std::mutex> l(mu_);
    pending_.erase(gtrid);
  };
  scope.heuristic = [this](const log::HeuristicRecord& h) { return store_->Heuristic(h); };
  scope.retain = [this](const std::function<bool(const log::BackendEntry&)>& keep) {
    return store_->RetainBackends(keep);
  };
  return RecoverScope(scope, dry_run, report);
}

Status TransactionManager::OutcomeOf(const std::string& gtrid, const std::vector<std::string>& prepared_in,
                                     bool* committed) {
  GtridParts p;
  if (!ParseGtrid(gtrid, &p) || p.node_id != node_id()) {
    return Status::InvalidArgument(ToHex(gtrid) + " is not a transaction of this node");
  }
  // A live incarnation may still decide it: only a dead one's is final.
  if (Live().Live(p.incarnation)) return Status::Busy(ToHex(gtrid) + " belongs to a live session");
  log::LogState st;
  if (Status s = store_->State(&st); !s.ok()) return Status::Busy(s.message());
  if (st.open_commits.count(gtrid)) {
    *committed = true;
    return Status::OK();
  }
  for (const auto& [key, h] : st.heuristics) {
    if (std::get<0>(key) == gtrid) return Status::Busy(ToHex(gtrid) + " has a heuristic outcome recorded");
  }
  // A last resource's decision row, read fenced; an RM where the client
  // holds a prepared branch is not its last resource.
  std::set<const Rm*> held;
  for (const std::string& name : prepared_in) {
    if (Rm* rm = FindRm(name)) held.insert(rm);
  }
  const int lrc = LastResourceDecided(gtrid, nullptr, nullptr, /*fenced=*/true, &held);
  if (lrc < 0) return Status::Busy("the decision of " + ToHex(gtrid) + " cannot be read now");
  *committed = lrc == 1;
  return Status::OK();
}

Status TransactionManager::RecoverNode(const std::string& name, bool force, bool dry_run, RecoveryReport* report) {
  *report = RecoveryReport();
  std::unique_ptr<store::TakenNode> node;
  Status s = store_->TakeOver(name, force, /*peek=*/dry_run, &node);
  if (!s.ok()) return s;
  if (!dry_run) {
    logger_->warn("took node {} over (incarnations up to {}): resolving its transactions", name, node->upto());
    report->actions.push_back("took node " + name + " over (incarnations up to " + std::to_string(node->upto()) + ")");
  }
  Scope scope;
  scope.node_id = node->node_id();
  scope.name = name;
  // Every incarnation up to the one taken over is dead; later ones are a new
  // owner's, left alone.
  scope.live.max = node->upto();
  std::vector<log::BackendEntry> registered;
  if (Status b = node->LoadBackends(&registered); b.ok()) {
    for (const log::BackendEntry& e : registered) {
      if (!scope.live.Live(e.incarnation)) scope.live.dead_backends.push_back(BackendId{e.rm, e.pid, e.start});
    }
  }
  // A database of the node that this TM does not reach may hold a branch, or
  // a last resource's decision row: then nothing is presumed aborted.
  for (const store::RmIdentity& theirs : node->rms()) {
    Rm* mine = FindRm(theirs.name);
    std::string why;
    if (mine == nullptr) {
      why = "it is not configured here";
    } else if (theirs.type != RmTypeName(mine->spec.type)) {
      why = std::string("it is of type ") + RmTypeName(mine->spec.type) + " here, " + theirs.type + " there";
    } else if (mine->spec.type == RmSpec::Type::kSqlite &&
               (theirs.identity.empty() || theirs.identity != sqlite::DatabaseIdOf(mine->spec.path))) {
      why = "its SQLite file here is not the node's (another database id)";
    }
    if (why.empty()) continue;
    scope.presume_abort = false;
    report->unreachable.push_back(theirs.name + ": node " + name + " used it, but " + why +
                                  ": its transactions without a decision in the store are left alone");
  }
  if (s = node->State(&scope.st); !s.ok()) return s;
  scope.end = [&node, this](const std::string& gtrid) {
    if (Status e = node->End(gtrid); !e.ok()) logger_->warn("cannot end {}: {}", ToHex(gtrid), e.message());
  };
  scope.heuristic = [&node](const log::HeuristicRecord& h) { return node->Heuristic(h); };
  scope.retain = [&node](const std::function<bool(const log::BackendEntry&)>& keep) {
    return node->RetainBackends(keep);
  };
  s = RecoverScope(scope, dry_run, report);
  if (dry_run) return s;
  const bool settled = s.ok() && report->left == 0 && report->unreachable.empty() &&
                       static_cast<size_t>(report->ended) == scope.st.open_commits.size();
  if (Status r = node->Release(settled); !r.ok()) logger_->warn("cannot give node {} back: {}", name, r.message());
  logger_->warn("node {}: {} committed, {} rolled back, {} ended, {} left{}", name, report->committed,
                report->rolled_back, report->ended, report->left, settled ? "; nothing of it is left" : "");
  for (const std::string& u : report->unreachable) logger_->warn("node {}: {}", name, u);
  return s;
}

void TransactionManager::TakeoverLoop() {
  const auto every = std::chrono::milliseconds(std::max(1000, cfg_.lease_s * 500));
  // A node whose transactions could not all be resolved is taken over again
  // one recovery interval later, not at every look.
  const auto again = std::max<Clock::duration>(every, std::chrono::seconds(cfg_.srv.recovery_interval_s));
  std::map<std::string, Clock::time_point> not_before;
  std::unique_lock<std::mutex> l(mu_);
  while (!stopping_) {
    takeover_cv_.wait_for(l, every);
    if (stopping_) break;
    l.unlock();
    std::vector<std::string> nodes;
    if (Status s = store_->ExpiredNodes(&nodes); !s.ok()) {
      logger_->warn("takeover: cannot list the nodes of the decision store: {}", s.message());
    }
    const auto now = Clock::now();
    for (const std::string& name : nodes) {
      if (auto it = not_before.find(name); it != not_before.end() && now < it->second) continue;
      RecoveryReport report;
      Status s = RecoverNode(name, /*force=*/false, /*dry_run=*/false, &report);
      if (!s.ok() && !s.IsBusy()) logger_->warn("takeover of node {}: {}", name, s.message());
      not_before[name] = Clock::now() + again;
    }
    l.lock();
  }
}

Status TransactionManager::RecoverScope(Scope& scope, bool dry_run, RecoveryReport* report) {
  const LiveSet& live = scope.live;
  const log::LogState& st = scope.st;
  const std::set<std::string>& skip = scope.skip;
  struct Found {
    Rm* rm;
    XID xid;
    bool resolved = false;
  };
  std::map<std::string, std::vector<Found>> ours;
  std::set<const Rm*> reachable;
  // The committed decision rows, read before the scan: a row that exists now
  // was committed after every other branch of its transaction was prepared,
  // so a scan that then finds none of them proves they are all finished
  // (CollectDecisionRows). Read after the scan, a row could belong to a
  // transaction whose branches were prepared after the scan looked.
  DecisionRows rows;
  for (auto& rm : rms_) CachedDecisionRows(rm.get(), &rows);
  bool fenced_all = true;
  for (auto& rm : rms_) {
    std::vector<XID> xids;
    std::string m;
    // Never a scan while a dead session's backend may still be preparing.
    const bool fenced = rm->spec.type != RmSpec::Type::kPostgres || dry_run ||
                        FenceDeadSessions(rm.get(), scope.node_id, live, report, &m);
    fenced_all = fenced_all && fenced;
    if (!fenced || !ScanRm(this, rm.get(), &xids, &m)) {
      report->unreachable.push_back(rm->spec.name + ": " + m);
      logger_->warn("recovery: {} unreachable: {}", rm->spec.name, m);
      continue;
    }
    reachable.insert(rm.get());
    for (const XID& x : xids) {
      GtridParts p;
      if (x.formatID != kFormatId || !ParseGtrid(rm::Gtrid(x), &p) || p.node_id != scope.node_id) continue;
      ours[std::string(rm::Gtrid(x))].push_back({rm.get(), x});
    }
  }
  const auto deadline = Clock::now() + std::chrono::seconds(cfg_.commit_retry_s);
  for (auto& [gtrid, found] : ours) {
    if (skip.count(gtrid)) continue;
    bool decided = st.open_commits.count(gtrid) > 0;
    GtridParts p;
    ParseGtrid(gtrid, &p);
    // Another live session's transaction: its own TM finishes it.
    if (p.incarnation != scope.own_incarnation && live.Live(p.incarnation)) continue;
    if (!decided && live.Live(p.incarnation)) continue;  // a live transaction of ours
    bool by_last_resource = false;
    Rm* decision_rm = nullptr;
    if (!decided) {
      // A last-resource commit leaves its decision in SQLite, not in the log.
      std::set<const Rm*> prepared_in;
      for (const Found& f : found) prepared_in.insert(f.rm);
      const int lrc = LastResourceDecided(gtrid, &decision_rm, &rows, /*fenced=*/true, &prepared_in);
      if (lrc < 0) {
        report->left += static_cast<int>(found.size());
        report->actions.push_back("leave " + ToHex(gtrid) +
                                  ": its decision cannot be known now (an RM that may hold its decision row is "
                                  "unreachable, or a transaction that may be committing it holds its lock)");
        continue;
      }
      decided = by_last_resource = lrc == 1;
      // A heuristic outcome recorded for it (a branch that could not be
      // finished as decided, and said so): an operator decides the rest,
      // never a presumption — its COMMIT may be ended already.
      bool heuristic = false;
      for (const auto& [key, h] : st.heuristics) heuristic = heuristic || std::get<0>(key) == gtrid;
      if (!decided && heuristic) {
        report->left += static_cast<int>(found.size());
        report->actions.push_back("leave " + ToHex(gtrid) + ": a heuristic outcome is recorded for it; an operator "
                                  "decides (xatm show, then commit or rollback, then forget)");
        continue;
      }
      if (!decided && !scope.presume_abort) {
        report->left += static_cast<int>(found.size());
        report->actions.push_back("leave " + ToHex(gtrid) + ": no decision in the store, and node " + scope.name +
                                  " may have left one in a database this TM does not reach");
        continue;
      }
    }
    for (Found& f : found) {
      const std::string what = std::string(decided ? "commit " : "roll back ") + ToHex(gtrid) + " on " +
                               f.rm->spec.name + (decided ? " (decided)" : " (no decision: presumed abort)");
      report->actions.push_back(what);
      if (dry_run) continue;
      std::string m;
      int rc = FinishBranch(f.rm, f.xid, decided, deadline, &m);
      if (rc == XAER_NOTA) rc = XA_OK;  // finished by someone between scan and now
      if (rc == XA_OK) {
        f.resolved = true;
        ++(decided ? report->committed : report->rolled_back);
        logger_->info("recovery: {}", what);
      } else if (rc == XA_HEURCOM || rc == XA_HEURRB || rc == XA_HEURMIX || rc == XA_HEURHAZ) {
        LogHeuristic(gtrid, f.rm, f.xid, rc, "xatm", m, &scope.heuristic);
        f.resolved = true;
      } else {
        ++report->left;
        logger_->warn("recovery: could not {}: {}", what, m);
      }
    }
    // The decision row goes only when no branch can ask for it again: every
    // branch found is finished and every RM could be scanned.
    if (by_last_resource && !dry_run && reachable.size() == rms_.size() &&
        std::all_of(found.begin(), found.end(), [](const Found& f) { return f.resolved; })) {
      ForgetDecision(decision_rm, gtrid);
    }
  }
  if (!dry_run && reachable.size() == rms_.size()) {
    std::set<std::string> in_doubt = skip;
    for (const auto& [gtrid, found] : ours) in_doubt.insert(gtrid);
    CollectDecisionRows(scope.node_id, live, in_doubt, &rows);
  }
  // END for decided transactions with nothing left in any RM.
  for (const auto& [gtrid, commit] : st.open_commits) {
    if (skip.count(gtrid)) continue;
    GtridParts p;
    if (ParseGtrid(gtrid, &p) && p.incarnation != scope.own_incarnation && live.Live(p.incarnation)) continue;
    bool done = true;
    for (const log::BranchRef& b : commit.branches) {
      Rm* rm = FindRm(b.rm);
      if (rm == nullptr || !reachable.count(rm)) {
        done = false;
        break;
      }
    }
    auto it = ours.find(gtrid);
    if (done && it != ours.end()) {
      for (const Found& f : it->second) done = done && f.resolved;
    }
    if (!done) continue;
    report->actions.push_back("end " + ToHex(gtrid) + " (every branch finished)");
    if (dry_run) continue;
    scope.end(gtrid);
    ++report->ended;
  }
  // The backends of dead incarnations are gone from every RM: forgotten.
  if (!dry_run && fenced_all && !live.dead_backends.empty()) {
    Status s = scope.retain([&](const log::BackendEntry& e) { return live.Live(e.incarnation); });
    if (!s.ok()) logger_->warn("recovery: cannot forget the backends of ended sessions: {}", s.message());
  }
  if (!dry_run && (report->committed || report->rolled_back || report->left)) {
    logger_->info("recovery: {} committed, {} rolled back, {} ended, {} left", report->committed,
                  report->rolled_back, report->ended, report->left);
  }
  return Status::OK();
}

Status TransactionManager::ListInDoubt(std::vector<InDoubt>* out, std::vector<std::string>* unreachable,
                                       bool decide_rows) {
  DecisionRows rows;
  out->clear();
  const LiveSet live = Live();
  log::LogState st;
  if (Status s = DecisionState(&st); !s.ok()) return s;
  const uint64_t now_ms = log::NowMs();
  // Every RM is scanned before any decision row is read (fenced reads
  // REQUIRE that the branches they decide were seen prepared before).
  for (auto& rm : rms_) {
    std::vector<XID> xids;
    std::string m;
    if (!ScanRm(this, rm.get(), &xids, &m)) {
      if (unreachable) unreachable->push_back(rm->spec.name + ": " + m);
      continue;
    }
    for (const XID& x : xids) {
      InDoubt d;
      d.xid = x;
      d.rm = rm->spec.name;
      out->push_back(d);
    }
  }
  std::map<std::string, std::set<const Rm*>> prepared_in;  // by gtrid
  for (const InDoubt& d : *out) prepared_in[std::string(rm::Gtrid(d.xid))].insert(FindRm(d.rm));
  for (InDoubt& d : *out) {
    GtridParts p;
    const std::string gtrid(rm::Gtrid(d.xid));
    d.ours = d.xid.formatID == kFormatId && ParseGtrid(gtrid, &p) && p.node_id == node_id();
    d.live = d.ours && live.Live(p.incarnation);
    auto c = st.open_commits.find(gtrid);
    if (c != st.open_commits.end()) {
      d.decision = InDoubt::Decision::kCommit;
      d.age_s = static_cast<int64_t>((now_ms - c->second.time_ms) / 1000);
    }
    for (const auto& [key, h] : st.heuristics) {
      if (std::get<0>(key) == gtrid) d.decision = InDoubt::Decision::kHeuristic;
    }
    if (!d.ours || d.decision != InDoubt::Decision::kNone) continue;
    // A live transaction's last resource may be committing right now: only a
    // committed row is shown; it is "in flight" otherwise.
    Rm* row_rm = nullptr;
    const int lrc = LastResourceDecided(gtrid, &row_rm, &rows, /*fenced=*/decide_rows && !d.live, &prepared_in[gtrid]);
    if (lrc == 1) {
      d.decision = InDoubt::Decision::kCommit;
      if (row_rm) d.decision_row = row_rm->spec.name;
    } else if (lrc < 0 && !d.live && decide_rows) {
      d.decision = InDoubt::Decision::kUnknown;
    }
  }
  return Status::OK();
}

Status TransactionManager::Resolve(const std::string& gtrid, bool commit, const std::string& who,
                                   const std::string& why, Outcome* outcome, bool force) {
  *outcome = Outcome::kOk;
  if (options_.read_only) {
    *outcome = Outcome::kInvalid;
    return Status::InvalidArgument("opened read-only");
  }
  log::LogState st;
  if (Status s = DecisionState(&st); !s.ok()) {
    *outcome = Outcome::kLogError;
    return s;
  }
  const bool decided = st.open_commits.count(gtrid) > 0;
  if (decided && !commit && !force) {
    *outcome = Outcome::kInvalid;
    return Status::InvalidArgument("the decision log says " + ToHex(gtrid) +
                                   " is committed: rolling it back would break atomicity (--force to do it anyway)");
  }
  for (const auto& [key, h] : st.heuristics) {
    if (std::get<0>(key) != gtrid || force) continue;
    const bool was_commit = h.outcome == log::HeuristicOutcome::kCommitted;
    const bool was_rollback = h.outcome == log::HeuristicOutcome::kRolledBack;
    if ((commit && was_rollback) || (!commit && was_commit)) {
      *outcome = Outcome::kInvalid;
      return Status::InvalidArgument(ToHex(gtrid) + " was already " + (was_commit ? "committed" : "rolled back") +
                                     " by hand by " + h.who + ": refusing the opposite (--force to do it anyway)");
    }
  }
  // Find its branches.
  std::vector<std::pair<Rm*, XID>> branches;
  for (auto& rm : rms_) {
    std::vector<XID> xids;
    std::string m;
    if (!ScanRm(this, rm.get(), &xids, &m)) {
      *outcome = Outcome::kRmError;
      return Status::IOError("resource manager " + rm->spec.name + " is unreachable: " + m);
    }
    for (const XID& x : xids) {
      if (rm::Gtrid(x) == gtrid) branches.emplace_back(rm.get(), x);
    }
  }
  if (branches.empty()) {
    *outcome = Outcome::kNotFound;
    return Status::NotFound("no prepared branch of " + ToHex(gtrid) + " in any resource manager");
  }
  // A last resource's decision row is a decision as binding as a COMMIT
  // record (read after the scan, fenced: a row about to commit is not missed).
  if (!commit && !decided && !force) {
    Rm* where = nullptr;
    std::set<const Rm*> prepared_in;
    for (const auto& [rm, x] : branches) prepared_in.insert(rm);
    const int lrc = LastResourceDecided(gtrid, &where, nullptr, /*fenced=*/true, &prepared_in);
    if (lrc == 1) {
      *outcome = Outcome::kInvalid;
      return Status::InvalidArgument(ToHex(gtrid) + " is committed: its decision row is in " + where->spec.name +
                                     " (a last-resource commit), so rolling it back would break atomicity "
                                     "(--force to do it anyway)");
    }
    if (lrc < 0) {
      *outcome = Outcome::kInvalid;
      return Status::InvalidArgument(
          "the decision of " + ToHex(gtrid) +
          " cannot be known now: a resource manager that may hold its decision row is unreachable, or a "
          "transaction that may be committing it holds the row's lock (its process may be paused). Retry "
          "later, or --force to roll back anyway");
    }
  }
  // The audit record first.
  log::HeuristicRecord h;
  h.format_id = static_cast<int32_t>(branches[0].second.formatID);
  h.gtrid = gtrid;
  h.outcome = commit ? log::HeuristicOutcome::kCommitted : log::HeuristicOutcome::kRolledBack;
  h.who = who.empty() ? "unknown" : who;
  h.why = why;
  h.time_ms = log::NowMs();
  Status s = store_->Heuristic(h);
  if (!s.ok()) {
    *outcome = Outcome::kLogError;
    return s;
  }
  logger_->warn("{} {} by hand by {}: {}", ToHex(gtrid), commit ? "committed" : "rolled back", h.who, why);
  const auto deadline = Clock::now() + std::chrono::seconds(cfg_.commit_retry_s);
  std::string failed;
  for (auto& [rm, x] : branches) {
    std::string m;
    int rc = FinishBranch(rm, x, commit, deadline, &m);
    if (rc != XA_OK && rc != XAER_NOTA) failed += (failed.empty() ? "" : "; ") + rm->spec.name + ": " + m;
  }
  if (!failed.empty()) {
    *outcome = Outcome::kRmError;
    return Status::IOError("not every branch could be finished: " + failed);
  }
  if (decided) RecordEnd(gtrid);
  return Status::OK();
}

Status TransactionManager::Forget(const std::string& gtrid) {
  if (options_.read_only) return Status::InvalidArgument("opened read-only");
  log::LogState st;
  if (Status s = DecisionState(&st); !s.ok()) return s;
  bool any = false;
  for (const auto& [key, h] : st.heuristics) any = any || std::get<0>(key) == gtrid;
  if (!any) return Status::NotFound("no heuristic outcome is recorded for " + ToHex(gtrid));
  for (auto& rm : rms_) {
    std::vector<XID> xids;
    std::string m;
    if (!ScanRm(this, rm.get(), &xids, &m)) continue;
    for (XID& x : xids) {
      if (rm::Gtrid(x) == gtrid) rm->sw->xa_forget_entry(&x, rm->rmid, TMNOFLAGS);
    }
  }
  Status s = store_->Forget(log::ForgetRecord{gtrid, "", ""});
  if (s.ok()) logger_->info("{} heuristic outcome forgotten", ToHex(gtrid));
  return s;
}

}  // namespace xtm::tm
