// Recovery: finishing decided branches, presuming abort for the rest of dead
// incarnations, taking over other nodes, and the admin's view (listing,
// resolving by hand, forgetting heuristic outcomes).
#include "core/transaction_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "common/xid_util.h"
#include "core/tm_internal.h"
#include "util/crash_point.h"

namespace xtm::tm {

// ---------------------------------------------------------------------------
// Phase two and recovery

int TransactionManager::FinishBranch(Rm* rm, const XID& xid_in, bool commit, Clock::time_point deadline,
                                     std::string* message, bool* vanished, const int* first) {
  XID xid = xid_in;
  bool attempted = false;
  auto backoff = std::chrono::milliseconds(10);
  for (;;) {
    std::string m;  // EnsureOpen's message already names the code
    int rc = first ? XA_RETRY : EnsureOpen(rm, &m);
    if (first) {
      rc = *first;
      m = Describe(rc, RmError(rm));
      first = nullptr;
    } else if (rc == XA_OK) {
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
  rm::DeadSessions dead{.node_hex = ToHex(node_id), .max = live.max, .live = live.live};
  for (const BackendId& b : live.dead_backends) {
    if (b.rm == rm->spec.name) dead.backends.push_back({b.pid, b.start});
  }
  int ended = 0;
  const bool gone = rm->x->EndDeadSessions(dead, &ended, why);
  if (ended > 0) {
    report->actions.push_back("ended " + std::to_string(ended) + " session(s) of earlier incarnations on " +
                              rm->spec.name);
    logger_->info("recovery: ending {} session(s) of earlier incarnations on {}", ended, rm->spec.name);
  }
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
    } else if (mine->x->HasIdentity() && (theirs.identity.empty() || theirs.identity != mine->x->Identity())) {
      why = "its database here is not the node's (another database id)";
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
    const bool fenced = dry_run ||
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
