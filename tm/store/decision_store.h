// DecisionStore: where the TM's commit decisions are kept, and who may end a
// TM's right to make them. One interface, one folder per backend:
//
//   file_store.h    the decision log in log_dir (log/), one process at a time
//   server_store.h  a session of xatmd, which keeps the log for many processes
//
// The TM (core/transaction_manager.h) never asks which one it has.
//
// A Session is the TM's standing with its store: the incarnation its XIDs are
// made under and whether it still holds. A store that can end it (xatmd
// declares a silent session dead; a store of many nodes takes over a node
// whose lease expired) makes the decisions of an ended session fail; the TM
// then gets a new session for its next transactions (Renew). A transaction
// keeps the session it began in: its COMMIT goes through that one, so that a
// decision can never be recorded for an incarnation that was taken over.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "log/backend_registry.h"
#include "log/decision_log.h"
#include "log/records.h"
#include "util/status.h"

namespace xtm::tm {

// A PostgreSQL backend that a TM session used for branches. Its pid and start
// time identify it; application_name does not (the application may change it).
struct BackendId {
  std::string rm;  // the RM's configured name
  int pid = 0;
  std::string start;  // pg_stat_activity.backend_start, as text
};

struct RecoveryReport {
  int committed = 0;
  int rolled_back = 0;
  int ended = 0;
  int left = 0;  // branches that could not be resolved now
  std::vector<std::string> actions;     // one line each, for people
  std::vector<std::string> unreachable;  // RMs whose scan failed
};

// What a TM has done since it opened, for xatmd's metrics.
struct Counters {
  uint64_t begun = 0;
  uint64_t committed = 0;
  uint64_t rolled_back = 0;
};

}  // namespace xtm::tm

namespace xtm::store {

class Session {
 public:
  virtual ~Session() = default;
  // The incarnation this session's XIDs are made under.
  virtual uint32_t incarnation() const = 0;
  // OK while the session holds; Fenced once the store ended it (its
  // transactions can then decide nothing), with why.
  virtual Status Check() = 0;
};

// A resource manager a node has configured, as the node's store records it
// for whoever takes the node over: that TM must reach the same databases.
struct RmIdentity {
  std::string name;
  std::string type;      // postgresql | sqlite | xa_switch (tm::RmTypeName)
  std::string identity;  // sqlite: the database's id (xatm_meta); else empty
};

// Another node's transactions, held by the node (or the admin tool) that took
// that node over, until Release. Its incarnations up to upto() are the taken
// ones: later ones belong to whoever claimed the node since, and are left
// alone. A store of many nodes only (postgres_store.h).
class TakenNode {
 public:
  virtual ~TakenNode() = default;
  virtual const std::string& node_id() const = 0;
  virtual const std::string& node_name() const = 0;
  virtual uint32_t upto() const = 0;
  // The resource managers the node had configured, to tell whether this TM
  // reaches every branch (and every decision row) it may have left.
  virtual const std::vector<RmIdentity>& rms() const = 0;
  // Its live decisions, read after the takeover fenced it: nothing can be
  // added to them any more.
  virtual Status State(log::LogState* out) = 0;
  virtual Status LoadBackends(std::vector<log::BackendEntry>* out) = 0;
  virtual Status RetainBackends(const std::function<bool(const log::BackendEntry&)>& keep) = 0;
  virtual Status Heuristic(const log::HeuristicRecord& r) = 0;
  virtual Status End(const std::string& gtrid) = 0;
  // Gives the node back (its lease runs out now). settled: nothing of it is
  // left anywhere, so it is not taken over again until it runs again.
  virtual Status Release(bool settled) = 0;
};

// What `xatm health` says of a store: facts for people, and what is wrong.
struct StoreHealth {
  std::string kind;  // file | xatmd | postgresql
  std::vector<std::pair<std::string, std::string>> facts;
  std::vector<std::string> warnings;
};

class DecisionStore {
 public:
  virtual ~DecisionStore() = default;

  // This TM's node (8 bytes; fixed) and its name, for people.
  virtual const std::string& node_id() const = 0;
  virtual const std::string& node_name() const = 0;
  // The session new transactions begin in.
  virtual std::shared_ptr<Session> Current() const = 0;
  // After `ended` stopped holding: a new session (a no-op if another thread
  // renewed it already). Fenced if none can be had now.
  virtual Status Renew(const std::shared_ptr<Session>& ended) = 0;
  // Bumped by every Renew: connections opened before belong to an ended
  // session (its backends are being ended) and are replaced.
  virtual uint64_t generation() const { return 0; }

  // The commit point: durable on OK. Fenced: the session was ended, nothing
  // was recorded; UnknownOutcome: it may or may not have been; IOError:
  // definitely not. ends_before: ENDs written in the same batch, unforced.
  virtual Status Commit(const log::CommitRecord& r, Session* session,
                        const std::vector<log::EndRecord>& ends_before = {}) = 0;
  virtual Status Heuristic(const log::HeuristicRecord& r) = 0;
  virtual Status Forget(const log::ForgetRecord& r) = 0;
  // Not forced; a lost END is redone by recovery.
  virtual void End(const log::EndRecord& r) = 0;
  // The live decisions: COMMITs without END, HEURISTICs without FORGET.
  virtual Status State(log::LogState* out) = 0;

  // Whether nobody but the holder of `session` can have finished a branch of
  // gtrid (its COMMIT reply was lost, then the branch was gone): the session
  // still holds and nobody decided gtrid by hand. OK or why not.
  virtual Status ConfirmSoleResolver(const std::string& gtrid, Session* session) = 0;
  // The outcome of gtrid, a transaction of an ended session whose commit
  // returned "unknown" while this process still holds its branches in the
  // RMs named by prepared_in (a SQLite branch, prepared on this thread): OK
  // and *committed once nothing can decide it any more; Busy while that is
  // not known. A store whose sessions never end this way: NotSupported.
  virtual Status Outcome(const std::string& gtrid, const std::vector<std::string>& prepared_in, bool* committed) {
    (void)gtrid;
    (void)prepared_in;
    (void)committed;
    return Status::NotSupported("this store's transactions are settled by the TM's own recovery");
  }
  // A PostgreSQL backend `incarnation` runs branches on, registered before
  // they run so that a takeover can end it. Fenced if the session ended.
  virtual Status RegisterBackend(uint32_t incarnation, const tm::BackendId& b, Session* session) = 0;
  // The backends registered so far, by incarnation; Retain keeps only those
  // for which keep is true. (A store whose recovery runs elsewhere has none.)
  virtual Status LoadBackends(std::vector<log::BackendEntry>* out) {
    out->clear();
    return Status::OK();
  }
  virtual Status RetainBackends(const std::function<bool(const log::BackendEntry&)>& keep) {
    (void)keep;
    return Status::OK();
  }

  // A store whose keeper resolves in-doubt transactions itself (xatmd):
  // recovery runs there, and Recover asks it to run now.
  virtual bool RecoversElsewhere() const { return false; }
  virtual Status Recover(bool dry_run, tm::RecoveryReport* report) {
    (void)dry_run;
    (void)report;
    return Status::NotSupported("this store's transactions are recovered by the TM itself");
  }

  // Nodes of the store whose lease expired and whose transactions may not
  // all be resolved yet (not this one).
  virtual Status ExpiredNodes(std::vector<std::string>* names) {
    names->clear();
    return Status::NotSupported("this store keeps one node's decisions");
  }
  // Takes node `name` over: ends its store sessions, then moves its epoch
  // (durably, on the synchronous standby too), so that nothing it decides
  // from then on is recorded. Busy while its lease is live, unless force.
  // peek: no takeover; State and LoadBackends only (a plan).
  virtual Status TakeOver(const std::string& name, bool force, bool peek, std::unique_ptr<TakenNode>* out) {
    (void)name;
    (void)force;
    (void)peek;
    out->reset();
    return Status::NotSupported("this store keeps one node's decisions: there is no other node to take over");
  }

  // The node's resource managers once they are open (a SQLite database gets
  // its id at its first open), for whoever takes the node over.
  virtual Status DescribeRms(const std::vector<RmIdentity>& rms) {
    (void)rms;
    return Status::OK();
  }
  // Whether `session` still holds, asked of the store itself (a round trip
  // where the store can end sessions without telling): after a failure that
  // a takeover explains (a branch's connection ended), so that the message
  // says so and the next transaction gets a new session.
  virtual Status Verify(Session* session) { return session->Check(); }

  // For a server that hands incarnations to its clients' sessions: makes
  // `incarnation` of this node durable before anyone uses it.
  virtual Status RecordIncarnation(uint32_t incarnation) {
    (void)incarnation;
    return Status::NotSupported("this store hands out no incarnations");
  }

  // For `xatm health`.
  virtual Status Health(StoreHealth* out) {
    out->kind = "file";
    return Status::OK();
  }

  // The TM's counters, for a store that reports them (xatmd's metrics).
  virtual void ReportCounters(const tm::Counters& c) { (void)c; }
  // Group commit statistics (zero where the store does not count them).
  virtual log::LogStats Stats() const { return {}; }
  // The local decision log behind the store, if there is one.
  virtual log::DecisionLog* file_log() { return nullptr; }
  // Ends the session cleanly (a store with sessions).
  virtual void Close() {}
};

}  // namespace xtm::store
