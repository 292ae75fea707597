#include "store/file_store.h"

namespace xtm::store {
namespace {

// The log's own incarnation. It never ends: the log's lock is this process's
// for as long as it lives, frozen or not, and every other resolver needs it.
class FileSession final : public Session {
 public:
  explicit FileSession(uint32_t incarnation) : incarnation_(incarnation) {}
  uint32_t incarnation() const override { return incarnation_; }
  Status Check() override { return Status::OK(); }

 private:
  const uint32_t incarnation_;
};

}  // namespace

Status FileStore::Open(const log::LogOptions& opts, std::unique_ptr<DecisionStore>* out) {
  out->reset();
  std::unique_ptr<log::DecisionLog> log;
  Status s = log::DecisionLog::Open(opts, &log);
  if (!s.ok()) return s;
  out->reset(new FileStore(std::move(log), opts.dir));
  return Status::OK();
}

FileStore::FileStore(std::unique_ptr<log::DecisionLog> log, const std::string& dir)
    : log_(std::move(log)), backends_(dir), session_(std::make_shared<FileSession>(log_->node().incarnation)) {}

Status FileStore::Renew(const std::shared_ptr<Session>& ended) {
  (void)ended;
  return Status::OK();  // the session never ends
}

Status FileStore::Commit(const log::CommitRecord& r, Session* session, const std::vector<log::EndRecord>& ends_before) {
  (void)session;
  return ends_before.empty() ? log_->Append(r) : log_->Append(r, ends_before);
}

void FileStore::End(const log::EndRecord& r) {
  Status s = log_->Append(r);
  (void)s;  // not forced: a lost END is redone by recovery
}

Status FileStore::State(log::LogState* out) {
  *out = log_->State();
  return Status::OK();
}

Status FileStore::ConfirmSoleResolver(const std::string& gtrid, Session* session) {
  // The log's lock is this process's while it lives, and recovery touches
  // only dead incarnations. An operator who resolves the transaction through
  // another configuration makes a heuristic decision of his own.
  (void)gtrid;
  (void)session;
  return Status::OK();
}

Status FileStore::RegisterBackend(uint32_t incarnation, const tm::BackendId& b, Session* session) {
  (void)session;
  return backends_.Add(log::BackendEntry{incarnation, b.rm, b.pid, b.start});
}

Status FileStore::RecordIncarnation(uint32_t incarnation) {
  const log::NodeRecord& node = log_->node();
  return log_->Append(log::NodeRecord{node.node_id, node.node_name, incarnation, log::NowMs()});
}

}  // namespace xtm::store
