// PostgresStore: the decisions kept in a PostgreSQL database (schema xatm),
// so that they outlive the machine: PostgreSQL's own replication (a
// synchronous standby) keeps them, and every node that shares the store can
// read them. Nodes are named (node_name, unique in the store); each holds a
// lease it renews in the background, and an epoch that every decision it
// writes is checked against in the same transaction. Taking a node over
// bumps its epoch first: a decision its old owner writes afterwards (frozen,
// partitioned, not dead) fails, and its session ends.
//
// Schema (created on first use, by a role that may):
//   xatm.node    (name, node_id, incarnation, epoch, lease_until, owner,
//                taken_over_upto, taken_over_by, settled, rms, sessions_upto)
//   xatm.record  (node_id, type, gtrid, rm, bqual, payload): the live
//                decisions, as the decision log's record payloads: COMMITs
//                without END, HEURISTICs without FORGET
//   xatm.backend (node_id, incarnation, rm, pid, start): backends registered
//                for takeovers
//
// Group commit: appenders queue their records; one leader writes all queued
// in one transaction (the epoch check, one multi-row INSERT, one COMMIT with
// synchronous_commit at least on); a decision is acknowledged only after
// PostgreSQL's COMMIT returned. A lost COMMIT reply is settled on a new
// connection, once the old backend is gone, by looking for the batch's rows
// (transaction ids are reused after a failover; gtrids are not), then made
// sure of on the synchronous standby by a synchronous commit of its own.
// Until that is known, the store records nothing and reads nothing.
//
// Takeover (TakeOver): end the node's store sessions, then bump its epoch and
// take its lease in one synchronous commit, then read. Every decision the
// node committed before is in WAL before the bump, so it is read; every one
// after fails its epoch check. The taker resolves incarnations up to the one
// it took; a claim of the node afterwards is a new incarnation.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/decision_store.h"
#include "util/group_waiter.h"

struct pg_conn;

namespace xtm::store {

struct PostgresStoreOptions {
  std::string conninfo;   // libpq; several hosts with target_session_attrs=read-write
  std::string node_name;  // unique in the store
  int lease_s = 10;
  // A store COMMIT that takes longer is cancelled (its outcome is then
  // settled from the rows): a synchronous standby that stopped answering
  // makes commits wait forever otherwise. 0: max(lease_s, 5).
  int commit_timeout_s = 0;
  // A decision's COMMIT waits for at least this: "on" (the WAL flushed here
  // and on the synchronous standbys, whatever the role sets) or
  // "remote_apply" (also applied there: readable on a hot standby).
  std::string synchronous_commit = "on";
  std::vector<RmIdentity> rms;  // the node's resource managers, for whoever takes it over
  bool read_only = false;  // look, never write: no lease, no new incarnation
  bool force = false;      // with read_only: even while the node's lease is held
};

// A node of the store, as `xatm store nodes` lists it.
struct StoreNode {
  std::string name, node_id_hex, owner, taken_over_by, rms;
  uint32_t incarnation = 0;
  uint64_t epoch = 0;
  int64_t lease_left_s = 0;  // negative: expired that long ago
  uint32_t taken_over_upto = 0;
  bool settled = false;
  int64_t open_decisions = 0;
};

class PostgresStore final : public DecisionStore {
 public:
  // For the admin tool, without opening a node: creates the schema (for a
  // role that may; the nodes' role then needs only USAGE and DML), reads
  // every record of every node (each node's as segment = its name, its
  // claims as NODE records; *problems: rows whose payload does not decode or
  // does not match its key), lists the nodes.
  static Status InitSchema(const std::string& conninfo);
  static Status ScanRecords(const std::string& conninfo, log::LogScan* out, std::vector<std::string>* problems);
  static Status ListNodes(const std::string& conninfo, std::vector<StoreNode>* out);

  // Creates the schema if it is missing, then claims node_name: a new node
  // (a random node id), or the next incarnation of one whose lease has
  // expired (Busy, naming the owner, while another process holds it).
  static Status Open(const PostgresStoreOptions& opts, std::unique_ptr<DecisionStore>* out);
  ~PostgresStore() override;

  const std::string& node_id() const override { return node_id_; }
  const std::string& node_name() const override { return opts_.node_name; }
  std::shared_ptr<Session> Current() const override;
  Status Renew(const std::shared_ptr<Session>& ended) override;
  uint64_t generation() const override { return generation_; }
  Status Commit(const log::CommitRecord& r, Session* session, const std::vector<log::EndRecord>& ends_before) override;
  Status Heuristic(const log::HeuristicRecord& r) override;
  Status Forget(const log::ForgetRecord& r) override;
  void End(const log::EndRecord& r) override;
  Status State(log::LogState* out) override;
  Status ConfirmSoleResolver(const std::string& gtrid, Session* session) override;
  Status RegisterBackend(uint32_t incarnation, const tm::BackendId& b, Session* session) override;
  Status LoadBackends(std::vector<log::BackendEntry>* out) override;
  Status RetainBackends(const std::function<bool(const log::BackendEntry&)>& keep) override;
  Status ExpiredNodes(std::vector<std::string>* names) override;
  Status DescribeRms(const std::vector<RmIdentity>& rms) override;
  Status RecordIncarnation(uint32_t incarnation) override;
  Status Health(StoreHealth* out) override;
  Status Verify(Session* session) override;
  Status TakeOver(const std::string& name, bool force, bool peek, std::unique_ptr<TakenNode>* out) override;
  log::LogStats Stats() const override;
  void Close() override;

 private:
  class NodeSession;
  class Taken;
  // One queued record of the next batch.
  struct Pending {
    std::string sql;    // its statement(s) in the batch's transaction
    std::string probe;  // a query that finds its effect after a lost reply (a row if it committed);
                        // empty: unforced (an END)
    GroupWaiter* waiter = nullptr;
    bool decision = false;  // a COMMIT record
  };
  explicit PostgresStore(const PostgresStoreOptions& opts) : opts_(opts) {}

  Status Claim(bool renewal, int attempt = 0);
  // Queues p; with a waiter, returns once its batch committed (or failed).
  Status Append(Pending p, uint64_t epoch);
  void LeadLocked(std::unique_lock<std::mutex>& lock);
  static void Finish(Pending& p, const Status& s);
  // Leads one round of batches now, then hands over to a waiting appender.
  void LeadNowLocked(std::unique_lock<std::mutex>& lock);
  // One batch in one transaction. Fenced if the epoch is no longer `epoch`.
  Status WriteBatch(const std::vector<Pending>& batch, uint64_t epoch);
  // After a lost reply: whether the batch committed, on a new connection,
  // once the backend that ran it (pid, start) is gone.
  Status Settle(const std::vector<std::string>& probes, const std::string& pid, const std::string& start,
                std::chrono::steady_clock::time_point deadline);
  // OK once no batch's outcome is unknown any more (settling it again if one
  // is). REQUIRES mu_ held via lock.
  Status SettledLocked(std::unique_lock<std::mutex>& lock);
  Status EnsureWriter();
  std::chrono::seconds commit_timeout() const;
  void LeaseLoop();
  void FlushLoop();
  // Unforced records queued before one is written by its appender itself.
  static constexpr size_t kLazyRecords = 256;
  std::shared_ptr<NodeSession> CurrentSession() const;
  // Why a session of this node decides nothing more: the store moved past it.
  std::string TakenOverMessage(uint32_t incarnation) const;

  const PostgresStoreOptions opts_;
  std::string node_id_;  // fixed for the node
  std::string owner_;    // this process's name for its lease (host/pid/random)

  mutable std::mutex session_mu_;
  std::shared_ptr<NodeSession> current_;  // REQUIRES session_mu_
  std::string rms_;                       // REQUIRES session_mu_: the node's RMs as its row records them
  std::mutex renew_mu_;
  std::atomic<uint64_t> generation_{0};

  // The group commit's writer (the leader's connection) and queue.
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;                     // leading_ became false
  std::vector<std::pair<Pending, uint64_t>> pending_;  // REQUIRES mu_: with the epoch it was made under
  bool leading_ = false;                                // REQUIRES mu_
  Status failed_;                                       // REQUIRES mu_: set while a batch's outcome is unknown
  struct Unsettled {
    std::vector<std::string> probes;  // a row each if the batch committed
    std::string pid, start;           // the backend that ran it
  } unsettled_;                       // REQUIRES mu_
  log::LogStats stats_;                                 // REQUIRES mu_
  pg_conn* writer_ = nullptr;                           // the leader's
  std::string writer_pid_, writer_start_;               // its backend, to end it after a lost reply
  std::string unsettled_pid_, unsettled_start_;         // the leader's: the backend of a batch left unknown
  bool sync_rep_cancelled_ = false;                     // the leader's: a notice of the last COMMIT
  std::thread flusher_;                                 // FlushLoop
  std::condition_variable flush_cv_;                    // something was queued, or stop
  bool flush_stop_ = false;                             // REQUIRES mu_

  // The lease.
  std::thread lease_;
  std::mutex lease_mu_;
  std::condition_variable lease_cv_;
  bool stopping_ = false;  // REQUIRES lease_mu_
};

}  // namespace xtm::store
