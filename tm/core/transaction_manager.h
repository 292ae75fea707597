// The embedded transaction manager: global transactions over XA switches,
// with the decision log as the commit point.
//
// Lifecycle of a global transaction (Transaction), and what happens if the
// process dies between two steps:
//
//  1. Begin       a new gtrid (node id, incarnation, sequence). Nothing durable.
//                 Crash: nothing exists anywhere.
//  2. Join        xa_start of a branch on an RM, on first use of its handle.
//                 Crash: the RMs roll back unprepared work when the session
//                 dies (PostgreSQL) or the journal is rolled back (SQLite).
//  3. Phase one   xa_end and xa_prepare on every branch; read-only branches
//                 drop out (SQLite ones that wrote nothing first: a single
//                 branch left then commits in one phase); any other vote than
//                 XA_OK rolls every branch back.
//                 Crash: some branches may be prepared, no decision is logged:
//                 recovery rolls them back (presumed abort), after making sure
//                 no backend of the dead process is still preparing.
//  4. Commit point  with two or more prepared branches, the COMMIT record is
//                 made durable (group commit). With one, it is committed
//                 without a record (one-phase, or a single prepared branch).
//                 Crash before the record is durable: presumed abort, as in 3.
//                 Crash after: the transaction commits; recovery finishes it.
//  5. Phase two   xa_commit on every prepared branch, retried through
//                 reconnects (XAER_RMFAIL: reopen and retry; XAER_NOTA after an
//                 earlier attempt: it had committed). Heuristic outcomes are
//                 logged (HEURISTIC) and returned as their own codes.
//                 Crash: recovery commits the branches of every COMMIT
//                 without END.
//  6. END         appended unforced once every branch is finished.
//
// Background phase two (background_phase_two = true, two or more prepared
// branches): after step 4 the SQLite branches are committed on the caller's
// thread (their transactions are open there), and the others are handed to
// the TM's phase-two threads, which commit them on their own connections and
// write END; xatm_commit returns at the hand-off. When those threads are
// behind, the caller commits the branches itself, as without the option. Until then another reader
// sees those branches' old rows and a writer waits for their locks.
// Crash after the hand-off: the decision is durable; recovery commits.
// With last_resource_commit too, the prepared branches are handed off once the
// last resource has committed (tm.lrc.handed_off), and their decision row is
// queued for deletion when the background threads have committed them.
//
// Last-resource commit (two or more branches; by default, and with
// last_resource_commit = sqlite): the last resource is the SQLite branch if
// there is exactly one and it wrote; with last_resource_commit = true, else
// the last-joined PostgreSQL branch. Step 4 is its own one-phase COMMIT, with a
// decision row (the gtrid; SQLite: xatm_decision, PostgreSQL:
// xatm.decision) written inside that transaction; no log record, no
// sidecar, no PREPARE for it. Crash before that COMMIT: no row, presumed
// abort. Crash after it: recovery finds the row and commits the others
// (a PostgreSQL row is looked for only once the dead process's sessions are
// gone: its COMMIT may still have been running).
//                 Crash before END is durable: recovery finds nothing left
//                 prepared and writes END itself.
//
// Recovery rules (at open, on demand, and in xatm_close for what this
// instance decided):
//  1. Read the log: COMMITs without END are decided. Read the committed
//     decision rows (before the scan: only those may be collected in 7).
//  2. For each PostgreSQL RM, terminate the sessions of dead incarnations
//     (the backends they registered, by pid and start time; and those tagged
//     application_name xatm/<node>/<incarnation>) and wait until they are
//     gone: a dead process's backend may still finish a PREPARE. An RM where
//     that cannot be made sure of is not scanned.
//  3. xa_recover every RM. Branches of other TMs (another formatID or node)
//     are never touched.
//  4. A branch of a decided transaction is committed: a COMMIT record, or a
//     decision row (LastResourceDecided: "no row" is read fenced).
//  5. A branch of this node with no decision, from a dead incarnation, is
//     rolled back (presumed abort). Branches of live incarnations belong to
//     transactions in flight and are left alone; so are those whose decision
//     cannot be known now.
//  6. A decided transaction none of whose branches is left in any reachable
//     RM gets its END record.
//  7. Decision rows of dead incarnations whose branches are all gone are
//     deleted.
// Why no other resolver can contradict a commit point (a frozen process, a
// takeover, an operator): docs/architecture.md, "Fencing".
//
// Thread-safety: a TransactionManager is shared by threads. A Transaction
// belongs to one thread at a time, and its branches live on the connections of
// the thread that joined them: finish it on that thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/rm_extras.h"
#include "core/config.h"
#include "log/decision_log.h"
#include "store/decision_store.h"
#include "util/status.h"
#include "xatm/xa.h"

namespace spdlog {
class logger;
}

namespace xtm::tm {

class Transaction;

// The outcome of an operation, for the C API to turn into an XATM_* code.
enum class Outcome {
  kOk,
  kRolledBack,   // nothing committed: a branch voted no or failed before the commit point
  kTimedOut,     // rolled back by the transaction timeout
  kPending,      // decided to commit; some branches are left to recovery
  kHeurMix,
  kHeurHaz,
  kHeurRb,
  kUnknown,      // the decision log failed in a way that may or may not have recorded it
  kInvalid,      // bad argument or call out of sequence
  kRmError,      // an RM failed or is unreachable
  kNotFound,
  kLogError,
  kFenced,       // xatmd declared this session dead: it rolled the transaction back
};

// One resource manager as the TM uses it.
struct Rm {
  RmSpec spec;
  int rmid = 0;
  xa_switch_t* sw = nullptr;
  // What the RM offers beside its switch (resource_managers/common/rm_extras.h).
  std::unique_ptr<rm::RmExtras> x;
  // Whether a branch on it can be the last resource (its decision rows are
  // enabled for the configured last_resource_commit).
  bool last_resource = false;
};

// A branch seen during recovery or listing.
struct InDoubt {
  XID xid{};
  std::string rm;
  enum class Decision {
    kNone,       // no decision anywhere: presumed abort
    kCommit,     // a COMMIT record, or a last resource's decision row
    kHeuristic,  // a heuristic outcome is recorded
    kUnknown,    // cannot be known now: an RM that may hold its decision row is unreachable or busy
  } decision = Decision::kNone;
  bool ours = false;
  bool live = false;  // of the current incarnation: a transaction in flight
  int64_t age_s = -1;
  std::string decision_row;  // decided by a last-resource row: the RM holding it
};

// The incarnations of this node whose transactions are in flight: recovery
// leaves their branches (and their PostgreSQL sessions) alone. The embedded TM
// has one, its own; xatmd has one per connected client session.
struct LiveSet {
  uint32_t max = 0;         // incarnations above this were allocated after the look: live
  std::set<uint32_t> live;  // at most max
  // Backends registered by incarnations that are not live (read by recovery
  // from the registry beside the log): it ends them, and waits until they
  // are gone, before it looks at prepared branches.
  std::vector<BackendId> dead_backends;
  bool Live(uint32_t incarnation) const { return incarnation > max || live.count(incarnation) > 0; }
};

struct OpenOptions {
  // Look, never change: the log is opened read-only (no new incarnation, no
  // recovery), and everything that would write is refused.
  bool read_only = false;
  // With read_only: open even while another process owns the log.
  bool force = false;
  // Run recovery at open (the applications' TM does; the admin tool decides).
  bool recover = true;
  // An RM that cannot be opened is reported by the calls that need it
  // instead of failing the open (the admin tool lists what it can reach).
  bool tolerate_unreachable_rms = false;
};

class TransactionManager {
 public:
  // Opens every RM (on the calling thread), the decision log, and runs
  // recovery. *out is set on success only. With [tm] server, the decisions go
  // to xatmd instead of a local log: the TM gets a session (its node id and
  // incarnation) from the server and leaves recovery to it.
  static Status Open(const TmConfig& cfg, std::unique_ptr<TransactionManager>* out,
                     const OpenOptions& options = {});
  ~TransactionManager();

  Status Begin(std::unique_ptr<Transaction>* out);

  // Runs recovery now. dry_run: report what would be done, change nothing.
  Status Recover(bool dry_run, RecoveryReport* report);
  // The outcome of gtrid, a transaction of a dead incarnation of this node
  // whose branches in prepared_in (RM names) a client still holds: committed
  // if decided, rolled back if nothing can decide it any more; Busy while
  // that cannot be known (in flight, a heuristic outcome, a decision row
  // unreadable now). For xatmd's OUTCOME.
  Status OutcomeOf(const std::string& gtrid, const std::vector<std::string>& prepared_in, bool* committed);
  // Takes node `name` of a shared decision store over and resolves its
  // transactions: commits what it decided, rolls back what is only prepared
  // (xatm recover --node). Busy while the node holds its lease, unless force.
  // dry_run: no takeover; the plan only. Allowed on a read-only TM: it
  // changes nothing of this node.
  Status RecoverNode(const std::string& name, bool force, bool dry_run, RecoveryReport* report);
  // In-doubt branches across the log and every RM; changes nothing.
  // decide_rows = false: a branch that no committed decision row decides is
  // listed without a decision, without waiting for the locks a fenced read
  // needs (for counting them, not for deciding them).
  Status ListInDoubt(std::vector<InDoubt>* out, std::vector<std::string>* unreachable, bool decide_rows = true);
  // A heuristic decision by hand for every branch of gtrid.
  // Refused if it contradicts a decision in the log (a COMMIT record, or a
  // heuristic decision the other way), unless force.
  Status Resolve(const std::string& gtrid, bool commit, const std::string& who, const std::string& why,
                 Outcome* outcome, bool force = false);
  bool read_only() const { return options_.read_only; }
  Status Forget(const std::string& gtrid);
  // Finishes what this instance decided and closes the RMs of this thread.
  // kPending if some branch is left to recovery.
  Outcome Close(std::string* message);

  // xatmd: which incarnations are in flight (default: this TM's own).
  void SetLiveSet(std::function<LiveSet()> f) { live_hook_ = std::move(f); }
  // The live decisions: of the local log, or of xatmd's.
  Status DecisionState(log::LogState* out) { return store_->State(out); }
  Counters counters() const { return {begun_.load(), committed_.load(), rolled_back_.load()}; }

  const TmConfig& config() const { return cfg_; }
  const std::string& node_id() const { return store_->node_id(); }
  // This TM's incarnation (with [tm] server: its current session's).
  uint32_t incarnation() const { return store_->Current()->incarnation(); }
  // Where the decisions are kept (store/decision_store.h).
  store::DecisionStore* store() { return store_.get(); }
  spdlog::logger& logger() { return *logger_; }

  // REQUIRES: name is configured. nullptr otherwise.
  Rm* FindRm(const std::string& name);
  // xa_open of rm on the calling thread, once. XA_OK or the RM's code.
  int EnsureOpen(Rm* rm, std::string* message);
  // xa_close + xa_open on the calling thread (after XAER_RMFAIL).
  int Reopen(Rm* rm, std::string* message);
  std::string RmError(const Rm* rm) const;
  const std::vector<std::unique_ptr<Rm>>& rms() const { return rms_; }

 private:
  friend class Transaction;
  TransactionManager(const TmConfig& cfg, const OpenOptions& options);

  Status OpenRms();
  // The store of TmConfig (store/open_store.h).
  Status OpenStore();
  // Registers the PostgreSQL backend of this thread's connection to rm with
  // the store, if it is not registered yet (whoever may have to end it).
  Status RegisterBackend(Rm* rm, store::Session* session);
  // What xa_open gets for rm now (a PostgreSQL conninfo carries the session tag).
  std::string XaInfo(const Rm* rm) const;
  LiveSet Live() const;
  // Finishes the branches this thread holds of transactions whose commit
  // returned "unknown", once the store can tell their outcome.
  void SettleThreadInDoubt();
  // Ends the PostgreSQL sessions of dead incarnations on rm and waits until
  // they are gone. False (with *why) if that cannot be made sure of: rm must
  // not be scanned then.
  bool FenceDeadSessions(Rm* rm, const std::string& node_id, const LiveSet& live, RecoveryReport* report,
                         std::string* why);
  // What one recovery pass works on: this node's transactions, or those of a
  // node taken over (RecoverNode).
  struct Scope {
    std::string node_id;
    std::string name;              // for messages
    uint32_t own_incarnation = 0;  // this TM's incarnation; 0 for another node
    LiveSet live;                  // incarnations left alone
    log::LogState st;              // the node's live decisions
    std::set<std::string> skip;    // in flight here
    // False when a decision row may be in a database this TM does not reach
    // (the taken node had an RM this one has not): nothing is presumed aborted.
    bool presume_abort = true;
    std::function<void(const std::string& gtrid)> end;
    std::function<Status(const log::HeuristicRecord&)> heuristic;
    std::function<Status(const std::function<bool(const log::BackendEntry&)>&)> retain;
  };
  Status RecoverScope(Scope& scope, bool dry_run, RecoveryReport* report);
  // With takeover = true: takes over nodes whose lease expired.
  void TakeoverLoop();
  void RecordEnd(const std::string& gtrid) { store_->End(log::EndRecord{gtrid}); }
  // Commits one branch of a decided transaction, retrying until deadline.
  // XA_OK when done (committed, or gone after an attempt: then *vanished is
  // set, for callers that must know whether someone else may have finished
  // it), else the last code. first: the answer of an attempt already made
  // (an asynchronous xa_commit), taken as the first attempt's.
  int FinishBranch(Rm* rm, const XID& xid, bool commit, std::chrono::steady_clock::time_point deadline,
                   std::string* message, bool* vanished = nullptr, const int* first = nullptr);
  // Recorded by `to` (a taken node's), else by this TM's store.
  void LogHeuristic(const std::string& gtrid, const Rm* rm, const XID& xid, int xa_code, const std::string& who,
                    const std::string& why, const std::function<Status(const log::HeuristicRecord&)>* to = nullptr);

  void Register(Transaction* tx);
  void Unregister(Transaction* tx);
  void ReaperLoop();
  // A branch phase two or a rollback could not finish in time: the reaper
  // thread keeps trying, so that no prepared branch of a live TM holds its
  // locks until the next recovery.
  struct Leftover {
    Rm* rm;
    XID xid;
    bool commit;
    std::string gtrid;
  };
  void AddLeftover(Leftover l);
  // Background phase two: commit branches of gtrid, then END (or, for a
  // last-resource commit, queue the decision row in decision_rm for deletion).
  struct Handoff {
    std::string gtrid;
    std::vector<Leftover> branches;
    Rm* decision_rm = nullptr;
  };
  // Every branch of gtrid is finished: END, or forget its decision row.
  // REQUIRES: mu_ not held.
  void Finished(const std::string& gtrid, Rm* decision_rm);
  // False when the phase-two threads are behind: the caller finishes itself.
  bool HandOff(Handoff&& h);
  void PhaseTwoLoop();
  // Waits until everything handed off is finished, then stops the threads.
  void StopPhaseTwo();
  void RetryLeftovers();
  // Last-resource decisions: whether a decision row for gtrid is in any RM
  // (1, and *where says which), in none (0), or cannot be known now (-1: an
  // RM is down, or a transaction that may be committing a row holds it).
  //
  // A row found by a plain read is a committed decision. "No row" is only
  // believed when read in a way that a commit in flight cannot slip past
  // (fenced): on SQLite under the database's write lock, which the last
  // resource's branch holds from xa_start to its COMMIT; on PostgreSQL by
  // inserting the same key and rolling back, which waits for a transaction
  // that inserted it and has not ended (the last resource writes its row
  // before any other branch is prepared). REQUIRES for fenced: every branch
  // of gtrid the caller acts on was seen prepared before this call, so the
  // last resource's transaction had begun (and written its row) before.
  // fenced = false: only for the process's own last resource, after its own
  // COMMIT returned (its row is there or not).
  // rows, if given, keeps each RM's plain rows (read once per recovery pass,
  // before the scan) and SQLite's locked reads for the whole pass.
  struct DecisionRows {
    std::map<const Rm*, std::optional<std::set<std::string>>> by_rm;   // nullopt: could not be read
    std::map<const Rm*, rm::FencedRead> locked;  // what RMs read under their lock, for the whole pass
  };
  // An RM in prepared_in holds a prepared branch of gtrid, so it is not the
  // transaction's last resource (that branch is never prepared): no fenced
  // read there, whose lock the prepared branch itself may be holding.
  int LastResourceDecided(const std::string& gtrid, Rm** where = nullptr, DecisionRows* rows = nullptr,
                          bool fenced = true, const std::set<const Rm*>* prepared_in = nullptr);
  // rm's rows by a plain read, once into rows; nullptr if they cannot be read.
  const std::set<std::string>* CachedDecisionRows(Rm* rm, DecisionRows* rows);
  // Whether rm holds a decision row for gtrid, read fenced (see above):
  // 1, 0, or -1 (with *why).
  int FencedDecisionRow(Rm* rm, const std::string& gtrid, DecisionRows* rows, std::string* why);
  // The gtrids of rm's decision rows by a plain read (only `only`, if
  // given): 0, or -1 if they cannot be read (no table is no rows; an RM
  // without decision rows has none). Never "none" on an error.
  int ReadDecisionRows(Rm* rm, std::set<std::string>* out, const std::string* only = nullptr);
  // Decision rows no longer needed, per RM: deleted inside a later
  // last-resource transaction on the same RM.
  void ForgetDecision(Rm* rm, const std::string& gtrid);
  std::vector<std::string> TakeFinishedDecisions(Rm* rm);
  // At close: deletes the rows still queued, outside any transaction.
  void DeleteFinishedDecisions();
  // In a recovery pass that scanned every RM: deletes the rows no branch can
  // ask for (a dead process's, with nothing of theirs in_doubt).
  void CollectDecisionRows(const std::string& node_id, const LiveSet& live, const std::set<std::string>& in_doubt,
                           DecisionRows* rows);

  const TmConfig cfg_;
  const OpenOptions options_;
  std::shared_ptr<spdlog::logger> logger_;
  std::unique_ptr<store::DecisionStore> store_;
  std::function<LiveSet()> live_hook_;
  std::atomic<uint64_t> begun_{0}, committed_{0}, rolled_back_{0};
  std::atomic<uint64_t> sequence_{0};
  std::vector<std::unique_ptr<Rm>> rms_;

  std::mutex mu_;
  std::set<Transaction*> active_;        // REQUIRES mu_: transactions that can time out
  std::set<std::string> in_flight_;      // REQUIRES mu_: gtrids being committed or rolled back
  std::set<std::string> pending_;        // REQUIRES mu_: decided here, some branch left over
  std::map<std::string, Rm*> pending_rows_;  // REQUIRES mu_: the same, decided by a decision row in an RM
  std::vector<Leftover> leftovers_;      // REQUIRES mu_
  std::map<const Rm*, std::vector<std::string>> finished_decisions_;  // REQUIRES mu_
  bool stopping_ = false;                // REQUIRES mu_
  std::condition_variable reaper_cv_;
  std::thread reaper_;
  std::condition_variable takeover_cv_;
  std::thread takeover_;  // with takeover = true
  std::deque<Handoff> handoffs_;         // REQUIRES mu_: background phase two to do
  int handoffs_busy_ = 0;                // REQUIRES mu_: being committed now
  bool phase_two_stopping_ = false;      // REQUIRES mu_
  std::condition_variable phase_two_cv_;  // work arrived, or stopping
  std::condition_variable drained_cv_;    // the queue drained and no handoff is being committed
  std::vector<std::thread> phase_two_;
};

class Transaction {
 public:
  ~Transaction();
  const std::string& gtrid() const { return gtrid_; }

  // The native handle of rm's branch, starting the branch on first use.
  // PGconn* for postgresql, sqlite3* for sqlite, nullptr for a plain switch.
  Status Join(const std::string& rm, RmSpec::Type want, void** native);
  // Phase one. kOk: every branch prepared (or read-only).
  Outcome Prepare(std::string* message);
  // Both phases, or phase two after Prepare.
  Outcome Commit(std::string* message);
  Outcome Rollback(std::string* message);
  bool finished() const { return state_ == State::kCommitted || state_ == State::kRolledBack; }
  // The TX interface's per-transaction settings. The timeout counts from
  // now (0: none). Background phase two is honoured only by a TM opened with
  // background_phase_two = true (its threads exist); false is always honoured.
  void SetTimeout(int seconds);
  void SetBackgroundPhaseTwo(bool on) { background_phase_two_ = on; }
  // Rolled back (or to be) by the transaction timeout.
  bool timed_out();

 private:
  friend class TransactionManager;
  Transaction(TransactionManager* tm, std::string gtrid, std::shared_ptr<store::Session> session);

  enum class State {
    kActive,      // branches may join; nothing prepared
    kPrepared,    // phase one done: every remaining branch is prepared
    kCommitted,   // finished: committed (or pending in the log)
    kRolledBack,  // finished: rolled back
  };
  struct Branch {
    Rm* rm = nullptr;
    XID xid{};
    // kVoting: its xa_prepare(TMASYNC) is sent, the vote not read yet.
    enum class St { kActive, kEnded, kVoting, kPrepared, kDone } st = St::kActive;
    void* native = nullptr;
  };

  Outcome CommitImpl(std::string* message);
  Outcome PhaseOne(bool explicit_prepare, std::string* message);
  bool Vote(Branch& b, std::string* why);
  // Records the vote rc of branch b (its xa_prepare's answer).
  bool Voted(Branch& b, int rc, std::string* why);
  Outcome CommitWithLastResource(Branch* last, std::string* message);
  // xa_commit of each prepared branch in writers, retried until
  // commit_retry_s; those not finished go to *left. kOk or a heuristic outcome.
  // decided: the commit is recorded (a COMMIT record or a decision row), so
  // whoever else finished a branch committed it. Otherwise a branch gone
  // after a lost reply is only taken for committed if ConfirmSoleResolver
  // says nobody else could have finished it (kUnknown if not).
  Outcome FinishWriters(const std::vector<Branch*>& writers, std::vector<Branch*>* left, std::string* message,
                        bool decided);
  Outcome PhaseTwo(std::string* message);
  // Rolls every unfinished branch back; message gets what failed.
  void RollbackAll(std::string* message);
  Outcome CheckThread(std::string* message) const;
  // Called by the reaper with mu_ held.
  void AbortForTimeout();

  TransactionManager* tm_;
  const std::string gtrid_;
  // The store's session it began in, which alone may decide it.
  const std::shared_ptr<store::Session> session_;
  std::mutex mu_;  // the owner's calls and the reaper
  State state_ = State::kActive;
  bool timed_out_ = false;
  bool one_phase_done_ = false;
  bool background_phase_two_ = false;  // the TM's setting unless SetBackgroundPhaseTwo
  std::vector<Branch> branches_;
  std::thread::id owner_;
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace xtm::tm
