// A committer waiting for a group commit's leader (the decision log's, the
// PostgreSQL store's). It has a mutex and condition variable of its own, so
// that the leader answers it after letting go of the group's mutex: a woken
// committer returns at once instead of blocking again on the leader.
#pragma once

#include <condition_variable>
#include <mutex>

#include "util/status.h"

namespace xtm {

class GroupWaiter {
 public:
  // Its batch went so (written and synced, or not). The committer may
  // return, and this object go, as soon as the call lets go of the mutex:
  // nothing touches it afterwards.
  void Answer(const Status& s) {
    std::lock_guard<std::mutex> g(m_);
    status_ = s;
    done_ = true;
    cv_.notify_one();
  }

  // No leader is writing: try to lead the next batch. REQUIRES: not answered
  // (the committer is still queued, so it is still there).
  void Poke() {
    std::lock_guard<std::mutex> g(m_);
    poked_ = true;
    cv_.notify_one();
  }

  // Waits for Answer or Poke. True, with the answer in *s, once answered;
  // false when poked.
  bool Wait(Status* s) {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [this] { return done_ || poked_; });
    poked_ = false;
    if (done_) *s = status_;
    return done_;
  }

  // Whether it is answered already (and how).
  bool Answered(Status* s) {
    std::lock_guard<std::mutex> g(m_);
    if (done_) *s = status_;
    return done_;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  Status status_;       // REQUIRES m_
  bool done_ = false;   // REQUIRES m_
  bool poked_ = false;  // REQUIRES m_
};

}  // namespace xtm
