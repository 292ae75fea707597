// ServerStore: the decisions go to xatmd (server/), which keeps one log for
// many processes. Its sessions end when the server declares one dead (or no
// longer knows it, after a restart); the next one is opened on demand.
// Recovery of this TM's transactions runs in the server.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "server/client.h"
#include "store/decision_store.h"

namespace xtm::store {

class ServerStore final : public DecisionStore {
 public:
  // A first session with the server at opts.address.
  static Status Connect(const server::ClientOptions& opts, std::unique_ptr<DecisionStore>* out);

  const std::string& node_id() const override { return node_id_; }
  const std::string& node_name() const override { return node_name_; }
  std::shared_ptr<Session> Current() const override;
  Status Renew(const std::shared_ptr<Session>& ended) override;
  uint64_t generation() const override { return generation_; }
  Status Commit(const log::CommitRecord& r, Session* session, const std::vector<log::EndRecord>& ends_before) override;
  Status Heuristic(const log::HeuristicRecord& r) override;
  Status Forget(const log::ForgetRecord& r) override;
  void End(const log::EndRecord& r) override;
  Status State(log::LogState* out) override;
  Status ConfirmSoleResolver(const std::string& gtrid, Session* session) override;
  Status Outcome(const std::string& gtrid, const std::vector<std::string>& prepared_in, bool* committed) override;
  Status RegisterBackend(uint32_t incarnation, const tm::BackendId& b, Session* session) override;
  bool RecoversElsewhere() const override { return true; }
  Status Recover(bool dry_run, tm::RecoveryReport* report) override;
  void ReportCounters(const tm::Counters& c) override;
  void Close() override;

  Status Health(StoreHealth* out) override {
    out->kind = "xatmd";
    return Status::OK();
  }

 private:
  class ServerSession;
  explicit ServerStore(const server::ClientOptions& opts) : opts_(opts) {}
  std::shared_ptr<ServerSession> CurrentSession() const;
  // A request that is not a transaction's decision: through the current
  // session, or a new one if the server ended it.
  Status CallServer(server::Kind kind, const std::string& payload, std::string* body);

  const server::ClientOptions opts_;
  std::string node_id_, node_name_;  // fixed: a renewed session must be of the same node
  mutable std::mutex mu_;
  std::shared_ptr<ServerSession> current_;  // REQUIRES mu_
  tm::Counters base_;                       // REQUIRES mu_: the counters when the current session began
  tm::Counters last_;                       // REQUIRES mu_: the counters last reported
  std::mutex renew_mu_;                     // one renewal at a time
  std::atomic<uint64_t> generation_{0};
};

}  // namespace xtm::store
