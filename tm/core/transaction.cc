// A global transaction: its branches, phase one, the commit point (a
// record in the store), phase two, rollback and the transaction timeout.
// The lifecycle and what a crash between two steps leaves: transaction_manager.h.
#include "core/transaction_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "common/xid_util.h"
#include "core/tm_internal.h"
#include "util/crash_point.h"

namespace xtm::tm {

// ---------------------------------------------------------------------------
// Transactions

Status TransactionManager::Begin(std::unique_ptr<Transaction>* out) {
  if (options_.read_only) return Status::InvalidArgument("opened read-only: no transactions");
  if (XATM_FAULT_POINT("tm.begin")) return Status::IOError("cannot begin: injected fault tm.begin");
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
      deadline_(Clock::now() + std::chrono::seconds(tm->cfg_.timeout_s)) {
  background_phase_two_ = tm->cfg_.background_phase_two;
  branches_.reserve(tm->rms_.size());  // a branch per RM at most
}

void Transaction::SetTimeout(int seconds) {
  std::lock_guard<std::mutex> l(tm_->mu_);  // the reaper reads deadline_ under it
  deadline_ = seconds <= 0 ? Clock::time_point::max() : Clock::now() + std::chrono::seconds(seconds);
}

bool Transaction::timed_out() {
  std::lock_guard<std::mutex> l(mu_);
  return timed_out_;
}

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
  // Before the application runs anything in it: whoever may have to end this
  // session (a takeover) knows it by an identity the application cannot change.
  if (Status s = tm_->RegisterBackend(rm, session_.get()); !s.ok()) {
    rm->sw->xa_end_entry(&b.xid, rm->rmid, TMFAIL);
    rm->sw->xa_rollback_entry(&b.xid, rm->rmid, TMNOFLAGS);
    return s;
  }
  b.native = rm->x->Native(rm->rmid);
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
      tm_->logger().warn("{} {}; retrying in the background", LazyHex{gtrid_}, what);
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
  return Voted(b, b.rm->sw->xa_prepare_entry(&b.xid, b.rm->rmid, TMNOFLAGS), why);
}

bool Transaction::Voted(Branch& b, int rc, std::string* why) {
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
  // Branches that provably only read (the RM can tell before any vote)
  // settle first: their read-only vote ends their transaction. If one branch
  // is left, it commits in one phase.
  if (why.empty() && !explicit_prepare && branches_.size() >= 2) {
    for (Branch& b : branches_) {
      if (b.st != Branch::St::kEnded || b.rm->x->BranchHasWrites(b.rm->rmid)) continue;
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
      tm_->logger().debug("{} committed in one phase on {}", LazyHex{gtrid_}, b.rm->spec.name);
      return Outcome::kOk;
    }
    if (IsRollbackCode(rc)) {
      b.st = Branch::St::kDone;
      state_ = State::kRolledBack;
      *message = "rolled back: the branch on \"" + b.rm->spec.name + "\" failed to commit: " +
                 Describe(rc, tm_->RmError(b.rm));
      tm_->logger().debug("{} rolled back: {}", LazyHex{gtrid_}, *message);
      return Outcome::kRolledBack;
    }
    // The RM could not tell whether its one-phase commit happened.
    b.st = Branch::St::kDone;
    state_ = State::kCommitted;
    *message = "the outcome of the one-phase commit on \"" + b.rm->spec.name + "\" is unknown: " +
               Describe(rc, tm_->RmError(b.rm));
    tm_->logger().error("{} {}", LazyHex{gtrid_}, *message);
    return Outcome::kUnknown;
  }
  // xa_prepare on every branch (a vote), the last one ended first: an RM may
  // start work at xa_end (the PostgreSQL RM sends the query its vote needs),
  // which then overlaps the other branches' prepares. The prepares of RMs
  // that take TMASYNC are all sent first and their votes read last, so that
  // the databases prepare (and flush their logs) at the same time. Every
  // outstanding prepare is completed, whatever the other votes: a decision
  // (here: none yet) comes only after all of them.
  std::vector<std::pair<Branch*, int>> sent;  // branch, handle
  sent.reserve(branches_.size());
  if (why.empty() && branches_.size() >= 2) {
    for (auto it = branches_.rbegin(); it != branches_.rend(); ++it) {
      Branch& b = *it;
      if (b.st != Branch::St::kEnded || !b.rm->x->TakesAsync()) continue;
      XATM_CRASH_POINT("tm.prepare.before_branch");
      const int h = b.rm->sw->xa_prepare_entry(&b.xid, b.rm->rmid, TMASYNC);
      if (h < 0) {
        Voted(b, h, &why);  // refused at once: a vote like any other
        break;
      }
      b.st = Branch::St::kVoting;
      sent.emplace_back(&b, h);
    }
  }
  for (auto it = branches_.rbegin(); it != branches_.rend(); ++it) {
    Branch& b = *it;
    if (!why.empty()) break;
    if (b.st != Branch::St::kEnded) continue;
    XATM_CRASH_POINT("tm.prepare.before_branch");
    Vote(b, &why);
  }
  for (auto& [b, handle] : sent) {
    int vote = XAER_RMFAIL;
    const int rc = b->rm->sw->xa_complete_entry(&handle, &vote, b->rm->rmid, TMNOFLAGS);
    if (rc != XA_OK) vote = rc;  // unanswered: maybe prepared, rolled back like a prepared branch
    std::string no;
    if (!Voted(*b, vote, &no) && why.empty()) why = no;
  }
  if (!why.empty()) {
    RollbackAll(message);
    *message = "rolled back: " + why + (message->empty() ? "" : "; " + *message);
    // A takeover ends the node's sessions on its databases: if that is why
    // a branch failed, say so (and the next transaction starts anew).
    if (Status s = tm_->store_->Verify(session_.get()); s.IsFenced()) {
      *message += "; " + s.message();
      tm_->logger().warn("{} {}", LazyHex{gtrid_}, *message);
      return Outcome::kFenced;
    }
    tm_->logger().debug("{} {}", LazyHex{gtrid_}, *message);
    return Outcome::kRolledBack;
  }
  XATM_CRASH_POINT("tm.prepare.after_all");
  state_ = State::kPrepared;
  return Outcome::kOk;
}

Outcome Transaction::PhaseTwo(std::string* message) {
  std::vector<Branch*> writers;
  writers.reserve(branches_.size());
  for (Branch& b : branches_) {
    if (b.st == Branch::St::kPrepared) writers.push_back(&b);
  }
  state_ = State::kCommitted;
  if (writers.empty()) return Outcome::kOk;  // every branch was read-only
  const LazyHex hex{gtrid_};
  auto log_decision = [&]() -> Outcome {
    log::CommitRecord rec;
    rec.format_id = static_cast<int32_t>(kFormatId);
    rec.gtrid = gtrid_;
    rec.time_ms = log::NowMs();
    rec.branches.reserve(writers.size());
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
    tm_->logger().debug("{} decided commit ({} prepared branches)", hex, writers.size());
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
  if (logged && background_phase_two_) {
    // Branches that live in this thread's connections now (SQLite's), the
    // others in the background.
    std::vector<Branch*> now, later;
    for (Branch* b : writers) (b->rm->x->FinishesOnAnyThread() ? later : now).push_back(b);
    worst = FinishWriters(now, &left, message, /*decided=*/true);
    TransactionManager::Handoff h;
    h.gtrid = gtrid_;
    for (Branch* b : later) h.branches.push_back({b->rm, b->xid, true, gtrid_});
    if (left.empty() && worst == Outcome::kOk && !later.empty() && tm_->HandOff(std::move(h))) {
      for (Branch* b : later) b->st = Branch::St::kDone;
      // If we crash now, the commit is decided: recovery finishes phase two.
      XATM_CRASH_POINT("tm.commit.handed_off");
      tm_->logger().debug("{} committed ({} branch(es) finishing in the background)", hex, later.size());
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
  tm_->logger().debug("{} committed ({} branches)", hex, writers.size());
  return worst;
}

Outcome Transaction::FinishWriters(const std::vector<Branch*>& writers, std::vector<Branch*>* left,
                                   std::string* message, bool decided) {
  const auto deadline = Clock::now() + std::chrono::seconds(tm_->cfg_.commit_retry_s);
  Outcome worst = Outcome::kOk;
  // The COMMITs of branches whose RM takes TMASYNC are all sent first; the
  // other branches commit meanwhile; then each sent one's outcome is read
  // and taken as the first attempt of the usual retrying FinishBranch.
  std::vector<std::pair<Branch*, int>> sent;  // branch, handle
  sent.reserve(writers.size());
  if (writers.size() >= 2) {
    for (Branch* b : writers) {
      if (!b->rm->x->TakesAsync() || !tls_rms.open.count(b->rm->rmid)) continue;
      XATM_CRASH_POINT("tm.commit.before_branch");
      const int h = b->rm->sw->xa_commit_entry(&b->xid, b->rm->rmid, TMASYNC);
      if (h >= 0) sent.emplace_back(b, h);  // refused: nothing was done, it commits below
    }
  }
  std::vector<std::pair<Branch*, int>> order;  // branch, answer of its sent COMMIT
  order.reserve(writers.size());
  for (Branch* b : writers) {
    bool was_sent = false;
    for (auto& [sb, h] : sent) was_sent = was_sent || sb == b;
    if (!was_sent) order.emplace_back(b, XA_OK);
  }
  const size_t now = order.size();  // order[now..]: the sent ones, answered once the others are done
  for (auto& [b, handle] : sent) order.emplace_back(b, XAER_RMFAIL);
  for (size_t i = 0; i < order.size(); ++i) {
    if (i == now) {
      for (size_t k = 0; k < sent.size(); ++k) {
        auto& [sb, handle] = sent[k];
        int outcome = XAER_RMFAIL;
        // Not completed: nothing is known; FinishBranch's retries find out.
        if (sb->rm->sw->xa_complete_entry(&handle, &outcome, sb->rm->rmid, TMNOFLAGS) != XA_OK) {
          outcome = XAER_RMFAIL;
        }
        order[now + k].second = outcome;
      }
    }
    Branch* b = order[i].first;
    const int* first = i < now ? nullptr : &order[i].second;
    std::string m;
    if (first == nullptr) XATM_CRASH_POINT("tm.commit.before_branch");
    bool vanished = false;
    int rc = tm_->FinishBranch(b->rm, b->xid, /*commit=*/true, deadline, &m, &vanished, first);
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
      if (b.st == Branch::St::kPrepared && !b.rm->x->FinishesOnAnyThread()) {
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
    tm_->logger().info("{} {} ({} branch(es)){}{}", LazyHex{gtrid_},
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
      tm_->logger().warn("{} {}", LazyHex{gtrid_}, *message);
      return Outcome::kFenced;
    }
  }
  if (state_ == State::kActive && tm_->cfg_.last_resource_commit != TmConfig::LastResource::kNone &&
      branches_.size() >= 2) {
    // The branch whose COMMIT runs in this process if there is exactly one
    // such (nothing is left running if we die), else the last-joined one of
    // a server that holds decision rows (last_resource_commit = true).
    Branch* last = nullptr;
    int in_process = 0;
    for (Branch& b : branches_) {
      if (b.rm->x->LastResourceKind() == rm::RmExtras::LastResource::kInProcess && b.st == Branch::St::kActive) {
        last = &b;
        ++in_process;
      }
    }
    // One that only read would write its decision row for nothing: it votes
    // read-only among the others instead.
    if (in_process != 1 || !last->rm->last_resource || !last->rm->x->BranchHasWrites(last->rm->rmid)) {
      last = nullptr;
      for (auto it = branches_.rbegin(); it != branches_.rend() && last == nullptr; ++it) {
        if (it->rm->x->LastResourceKind() == rm::RmExtras::LastResource::kServer && it->rm->last_resource &&
            it->st == Branch::St::kActive && it->rm->x->CanDecide(it->native)) {
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
  tm_->logger().debug("{} rolled back by the application", LazyHex{gtrid_});
  return message->empty() ? Outcome::kOk : Outcome::kRmError;
}

// REQUIRES: mu_ held (by the reaper).
void Transaction::AbortForTimeout() {
  timed_out_ = true;
  for (Branch& b : branches_) {
    if (b.st != Branch::St::kActive && b.st != Branch::St::kEnded) continue;
    if (b.native) b.rm->x->AbortFromAnotherThread(b.native);
  }
  tm_->logger().warn("{} rolled back: open longer than timeout_s = {}", LazyHex{gtrid_}, tm_->cfg_.timeout_s);
}

}  // namespace xtm::tm
