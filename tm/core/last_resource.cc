// The last-resource commit: one branch commits in one phase after every other
// is prepared, its decision row inside its own transaction; and the decision
// rows themselves, read plainly or fenced, deleted once nothing can ask.
#include "core/transaction_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "common/xid_util.h"
#include "core/tm_internal.h"
#include "util/crash_point.h"

namespace xtm::tm {

// Last-resource commit: the branch `last` is committed in one phase, after
// every other branch is prepared, with the decision row inside its own
// transaction. That COMMIT is the commit point.
Outcome Transaction::CommitWithLastResource(Branch* last, std::string* message) {
  tm_->Unregister(this);
  const LazyHex hex{gtrid_};
  // A COMMIT that ran in this process has its row there or not; a server's
  // that the RM could not settle may still be running.
  const bool in_process = last->rm->x->LastResourceKind() == rm::RmExtras::LastResource::kInProcess;
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
    tm_->logger().debug("{} {}", hex, *message);
    return Outcome::kRolledBack;
  };
  // 1. The decision row, and the removal of rows no longer needed, in the
  //    last branch: they commit exactly when it does.
  if (const std::string why = last->rm->x->WriteDecisionRow(last->rm->rmid, gtrid_, finished); !why.empty()) {
    return roll_back("cannot write the decision row: " + why);
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
    if (IsRollbackCode(rc) ||
        (in_process && tm_->LastResourceDecided(gtrid_, nullptr, nullptr, /*fenced=*/false) == 0)) {
      return roll_back(why);
    }
    // Whether it committed cannot be told now: the decision row settles it at recovery.
    state_ = State::kCommitted;
    *message = why + "; its outcome is unknown until recovery";
    tm_->logger().error("{} {}", hex, *message);
    return Outcome::kUnknown;
  }
  last->st = Branch::St::kDone;
  last->rm->x->DecisionRowCommitted();
  // If we crash now, the commit is decided: the decision row is durable in
  // the last resource, and recovery commits the other branches.
  XATM_CRASH_POINT("tm.lrc.after_last");
  state_ = State::kCommitted;
  std::vector<Branch*> writers;
  for (Branch& b : branches_) {
    if (b.st == Branch::St::kPrepared) writers.push_back(&b);
  }
  if (background_phase_two_ && !writers.empty()) {
    TransactionManager::Handoff h;
    h.gtrid = gtrid_;
    h.decision_rm = last->rm;
    for (Branch* b : writers) h.branches.push_back({b->rm, b->xid, true, gtrid_});
    if (tm_->HandOff(std::move(h))) {
      for (Branch* b : writers) b->st = Branch::St::kDone;
      // If we crash now, the commit is decided: recovery finds the row.
      XATM_CRASH_POINT("tm.lrc.handed_off");
      tm_->logger().debug("{} committed (last resource {}, {} branch(es) finishing in the background)", hex,
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
  tm_->logger().debug("{} committed ({} branches, last resource {})", hex, branches_.size(), last->rm->spec.name);
  return worst;
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

int TransactionManager::ReadDecisionRows(Rm* rm, std::set<std::string>* out, const std::string* only) {
  std::string why;
  const int r = rm->x->ReadDecisionRows(out, only, &why);
  if (r < 0) logger_->info("decision rows of {}: {}", rm->spec.name, why);
  return r;
}

int TransactionManager::FencedDecisionRow(Rm* rm, const std::string& gtrid, DecisionRows* rows, std::string* why) {
  rm::FencedRead once;
  return rm->x->FencedDecisionRow(gtrid, rows ? &rows->locked[rm] : &once, why);
}

int TransactionManager::LastResourceDecided(const std::string& gtrid, Rm** where, DecisionRows* rows, bool fenced,
                                            const std::set<const Rm*>* prepared_in) {
  int result = 0;
  for (auto& rm : rms_) {
    if (rm->x->LastResourceKind() == rm::RmExtras::LastResource::kNever) continue;
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

void TransactionManager::DeleteFinishedDecisions() {
  std::map<const Rm*, std::vector<std::string>> all;
  {
    std::lock_guard<std::mutex> l(mu_);
    all.swap(finished_decisions_);
  }
  for (const auto& [rm, gtrids] : all) {
    // Left behind otherwise: a few small rows, collected by a later recovery.
    if (!const_cast<Rm*>(rm)->x->DeleteDecisionRows(gtrids)) {
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
    if (!gone.empty() && rm->x->DeleteDecisionRows(gone)) {
      logger_->info("recovery: deleted {} decision row(s) of finished transactions in {}", gone.size(),
                    rm->spec.name);
    }
  }
}

}  // namespace xtm::tm
