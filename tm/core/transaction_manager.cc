#include "core/transaction_manager.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/xid_util.h"
#include "core/tm_internal.h"
#include "store/open_store.h"
#include "util/crash_point.h"

// The TM's lifecycle is in five files, each read top to bottom:
//   transaction_manager.cc  opening and closing the TM, its RMs on each thread
//   transaction.cc          a transaction: joining branches, the two phases
//   last_resource.cc        the last-resource commit and the decision rows
//   background.cc           background phase two, the reaper, leftovers
//   recovery.cc             recovery, takeover, listing and resolving by hand

namespace xtm::tm {

namespace {

// rmids are unique in the process, so that several TMs never share one.
std::atomic<int> g_next_rmid{1000};
std::atomic<int> g_logger_serial{0};

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
  if (it == tls_rms.open.end() || !rm->x->SessionOf(rm->rmid, &pid, &start)) return Status::OK();
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
  return rm->x->XaInfo(SessionTag(node_id(), incarnation()));
}

Status TransactionManager::OpenRms() {
  for (const RmSpec& spec : cfg_.rms) {
    auto rm = std::make_unique<Rm>();
    rm->spec = spec;
    rm->rmid = g_next_rmid++;
    const rm::RmParams params = RmParamsOf(spec, rm->rmid, options_.read_only);
    if (const rm::RmType* t = rm::FindRmType(RmTypeName(spec.type))) {
      rm->sw = t->sw;
      rm->x = t->make(params);
    } else {
      rm->sw = spec.sw;
      rm->x = rm::PlainExtras(params);
    }
    std::string msg;
    const bool opened = EnsureOpen(rm.get(), &msg) == XA_OK;
    if (!opened && !options_.tolerate_unreachable_rms) {
      return Status::InvalidArgument("resource manager \"" + spec.name + "\" (" + RmTypeName(spec.type) +
                                     ") cannot be opened: " + msg);
    }
    // Which RMs may commit last holding the decision: one whose COMMIT runs
    // in this process always (unless last_resource_commit = false), a
    // server's with last_resource_commit = true once its table is there.
    const rm::RmExtras::LastResource kind = rm->x->LastResourceKind();
    if (kind == rm::RmExtras::LastResource::kInProcess) {
      rm->last_resource = cfg_.last_resource_commit != TmConfig::LastResource::kNone;
    } else if (opened && kind == rm::RmExtras::LastResource::kServer &&
               cfg_.last_resource_commit == TmConfig::LastResource::kAny && !options_.read_only) {
      if (std::string why = rm->x->EnableDecisionRows(); !why.empty()) return Status::InvalidArgument(why);
      rm->last_resource = true;
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
      rm->sw->xa_close_entry(const_cast<char*>(rm->spec.xa_info.c_str()), rm->rmid, TMNOFLAGS);
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


Rm* TransactionManager::FindRm(const std::string& name) {
  for (auto& rm : rms_) {
    if (rm->spec.name == name) return rm.get();
  }
  return nullptr;
}

std::string TransactionManager::RmError(const Rm* rm) const { return rm->x->LastError(rm->rmid); }

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
  rm->x->TrustFreshXids(rm->rmid);
  return XA_OK;
}

int TransactionManager::Reopen(Rm* rm, std::string* message) {
  if (tls_rms.open.erase(rm->rmid)) {
    rm->sw->xa_close_entry(const_cast<char*>(rm->spec.xa_info.c_str()), rm->rmid, TMNOFLAGS);
  }
  return EnsureOpen(rm, message);
}

}  // namespace xtm::tm
