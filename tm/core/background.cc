// Work off the callers' threads: background phase two, the reaper (transaction
// timeouts, branches left over, the RMs' upkeep) and its retries.
#include "core/transaction_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "common/xid_util.h"
#include "core/tm_internal.h"
#include "util/crash_point.h"

namespace xtm::tm {

bool TransactionManager::HandOff(Handoff&& h) {
  std::lock_guard<std::mutex> l(mu_);
  if (phase_two_.empty()) return false;  // no phase-two threads (background_phase_two = false)
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
  auto next_upkeep = Clock::now();
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
    if (Clock::now() >= next_upkeep) {
      l.unlock();
      for (auto& rm : rms_) rm->x->Maintain();
      l.lock();
      next_upkeep = Clock::now() + std::chrono::seconds(1);
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

}  // namespace xtm::tm
