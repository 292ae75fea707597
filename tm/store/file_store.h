// FileStore: the decision log in log_dir (log/decision_log.h), owned by one
// process at a time (its LOCK), and the registry of the backends its
// incarnations ran branches on (log/backend_registry.h). Its one session
// never ends: no other process may make this node's decisions while it lives.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "log/backend_registry.h"
#include "log/decision_log.h"
#include "store/decision_store.h"

namespace xtm::store {

class FileStore final : public DecisionStore {
 public:
  // Opens (or creates) the log; see DecisionLog::Open. warnings: what the
  // open noticed and repaired (a torn tail).
  static Status Open(const log::LogOptions& opts, std::unique_ptr<DecisionStore>* out);

  const std::string& node_id() const override { return log_->node().node_id; }
  const std::string& node_name() const override { return log_->node().node_name; }
  std::shared_ptr<Session> Current() const override { return session_; }
  Status Renew(const std::shared_ptr<Session>& ended) override;
  Status Commit(const log::CommitRecord& r, Session* session, const std::vector<log::EndRecord>& ends_before) override;
  Status Heuristic(const log::HeuristicRecord& r) override { return log_->Append(r); }
  Status Forget(const log::ForgetRecord& r) override { return log_->Append(r); }
  void End(const log::EndRecord& r) override;
  Status State(log::LogState* out) override;
  Status ConfirmSoleResolver(const std::string& gtrid, Session* session) override;
  Status RegisterBackend(uint32_t incarnation, const tm::BackendId& b, Session* session) override;
  Status LoadBackends(std::vector<log::BackendEntry>* out) override { return backends_.Load(out); }
  Status RetainBackends(const std::function<bool(const log::BackendEntry&)>& keep) override {
    return backends_.Retain(keep);
  }
  Status RecordIncarnation(uint32_t incarnation) override;
  log::LogStats Stats() const override { return log_->Stats(); }
  log::DecisionLog* file_log() override { return log_.get(); }

 private:
  FileStore(std::unique_ptr<log::DecisionLog> log, const std::string& dir);

  std::unique_ptr<log::DecisionLog> log_;
  log::BackendRegistry backends_;
  std::shared_ptr<Session> session_;
};

}  // namespace xtm::store
