#include "store/server_store.h"

#include "core/gtrid.h"
#include "util/coding.h"

namespace xtm::store {

class ServerStore::ServerSession final : public Session {
 public:
  explicit ServerSession(std::unique_ptr<server::ServerClient> c) : client_(std::move(c)) {}
  uint32_t incarnation() const override { return client_->session().incarnation; }
  Status Check() override { return client_->Check(); }
  server::ServerClient* client() { return client_.get(); }

 private:
  std::unique_ptr<server::ServerClient> client_;
};

namespace {

Status ConnectSession(const server::ClientOptions& opts, std::unique_ptr<server::ServerClient>* out) {
  Status s = server::ServerClient::Connect(opts, out);
  if (s.ok()) return s;
  return s.IsInvalidArgument() ? Status::InvalidArgument(s.message()) : Status::IOError(s.message());
}

}  // namespace

Status ServerStore::Connect(const server::ClientOptions& opts, std::unique_ptr<DecisionStore>* out) {
  out->reset();
  std::unique_ptr<server::ServerClient> c;
  Status s = ConnectSession(opts, &c);
  if (!s.ok()) return s;
  std::unique_ptr<ServerStore> store(new ServerStore(opts));
  store->node_id_ = c->session().node_id;
  store->node_name_ = c->session().node_name;
  store->current_ = std::make_shared<ServerSession>(std::move(c));
  *out = std::move(store);
  return Status::OK();
}

std::shared_ptr<ServerStore::ServerSession> ServerStore::CurrentSession() const {
  std::lock_guard<std::mutex> l(mu_);
  return current_;
}

std::shared_ptr<Session> ServerStore::Current() const { return CurrentSession(); }

Status ServerStore::Renew(const std::shared_ptr<Session>& ended) {
  std::lock_guard<std::mutex> renewing(renew_mu_);
  if (Current() != ended) return Status::OK();  // another thread renewed it
  const std::string why = ended->Check().message();
  std::unique_ptr<server::ServerClient> c;
  Status s = ConnectSession(opts_, &c);
  if (!s.ok()) return Status::Fenced(why + "; a new session could not be opened: " + s.message());
  if (c->session().node_id != node_id_) {
    const std::string other = tm::ToHex(c->session().node_id);
    c->Close();
    return Status::Fenced(why + "; xatmd at " + opts_.address.text + " now keeps another decision log (node " +
                          other + ", not " + tm::ToHex(node_id_) + "): reopen the TM");
  }
  std::lock_guard<std::mutex> l(mu_);
  current_ = std::make_shared<ServerSession>(std::move(c));
  base_ = last_;  // the new session reports what this TM does from now on
  ++generation_;
  return Status::OK();
}

Status ServerStore::Commit(const log::CommitRecord& r, Session* session,
                           const std::vector<log::EndRecord>& ends_before) {
  // ENDs are held back by the client and ride with its next request anyway.
  for (const log::EndRecord& e : ends_before) End(e);
  return static_cast<ServerSession*>(session)->client()->Call(server::Kind::kCommit, log::Encode(r), nullptr);
}

Status ServerStore::CallServer(server::Kind kind, const std::string& payload, std::string* body) {
  std::shared_ptr<ServerSession> session = CurrentSession();
  Status s = session->client()->Call(kind, payload, body);
  if (!s.IsFenced()) return s;
  if (Status r = Renew(session); !r.ok()) return r;
  return CurrentSession()->client()->Call(kind, payload, body);
}

Status ServerStore::Heuristic(const log::HeuristicRecord& r) {
  return CallServer(server::Kind::kHeuristic, log::Encode(r), nullptr);
}

Status ServerStore::Forget(const log::ForgetRecord& r) {
  return CallServer(server::Kind::kForget, log::Encode(r), nullptr);
}

void ServerStore::End(const log::EndRecord& r) {
  CurrentSession()->client()->Send(server::Kind::kEnd, log::Encode(r));
}

Status ServerStore::State(log::LogState* out) {
  std::string body;
  Status s = CallServer(server::Kind::kState, "", &body);
  if (!s.ok()) return s;
  Decoder d(body);
  uint32_t n = 0;
  log::LiveState state;
  if (!d.GetFixed32(&n)) return Status::Corruption("xatmd sent a malformed STATE reply");
  for (uint32_t i = 0; i < n; ++i) {
    uint8_t type = 0;
    std::string payload;
    if (!d.GetFixed8(&type) || !d.GetBytes(&payload, server::kMaxFrame)) {
      return Status::Corruption("xatmd sent a malformed STATE reply");
    }
    s = state.Apply(static_cast<log::RecordType>(type), payload, /*validate=*/true);
    if (!s.ok()) return s;
  }
  *out = state.Decoded();
  return Status::OK();
}

Status ServerStore::ConfirmSoleResolver(const std::string& gtrid, Session* session) {
  // The server answers ALIVE only while the session is not dead (a session
  // declared dead stays dead) and nobody decided gtrid by hand.
  std::string p;
  PutBytes(&p, gtrid);
  return static_cast<ServerSession*>(session)->client()->Call(server::Kind::kAlive, p, nullptr);
}

Status ServerStore::Outcome(const std::string& gtrid, const std::vector<std::string>& prepared_in, bool* committed) {
  std::string p;
  PutBytes(&p, gtrid);
  PutFixed32(&p, static_cast<uint32_t>(prepared_in.size()));
  for (const std::string& rm : prepared_in) PutBytes(&p, rm);
  std::string body;
  Status s = CurrentSession()->client()->Call(server::Kind::kOutcome, p, &body);
  if (!s.ok()) return Status::Busy(s.message());
  Decoder d(body);
  uint8_t c = 0;
  if (!d.GetFixed8(&c)) return Status::Busy("xatmd sent a malformed OUTCOME reply");
  *committed = c == 1;
  return Status::OK();
}

Status ServerStore::RegisterBackend(uint32_t incarnation, const tm::BackendId& b, Session* session) {
  (void)incarnation;  // the session's own
  std::string p;
  PutBytes(&p, b.rm);
  PutFixed32(&p, static_cast<uint32_t>(b.pid));
  PutBytes(&p, b.start);
  Status s = static_cast<ServerSession*>(session)->client()->Call(server::Kind::kBackend, p, nullptr);
  if (s.ok() || s.IsFenced()) return s;
  return Status::IOError("cannot register the session's backend with xatmd: " + s.message());
}

Status ServerStore::Recover(bool dry_run, tm::RecoveryReport* report) {
  std::string p, body;
  PutFixed32(&p, dry_run ? 1 : 0);
  Status s = CallServer(server::Kind::kRecover, p, &body);
  if (!s.ok()) return s;
  Decoder d(body);
  uint32_t v[5] = {0, 0, 0, 0, 0};
  for (uint32_t& x : v) {
    if (!d.GetFixed32(&x)) return Status::Corruption("xatmd sent a malformed RECOVER reply");
  }
  report->committed = static_cast<int>(v[0]);
  report->rolled_back = static_cast<int>(v[1]);
  report->ended = static_cast<int>(v[2]);
  report->left = static_cast<int>(v[3]);
  for (uint32_t i = 0; i < v[4]; ++i) {
    std::string line;
    if (!d.GetBytes(&line, server::kMaxFrame)) return Status::Corruption("xatmd sent a malformed RECOVER reply");
    report->actions.push_back(line);
  }
  return Status::OK();
}

void ServerStore::ReportCounters(const tm::Counters& c) {
  std::shared_ptr<ServerSession> session;
  tm::Counters base;
  {
    std::lock_guard<std::mutex> l(mu_);
    session = current_;
    base = base_;
    last_ = c;
  }
  session->client()->SetCounters(c.begun - base.begun, c.committed - base.committed, c.rolled_back - base.rolled_back);
}

void ServerStore::Close() { CurrentSession()->client()->Close(); }

}  // namespace xtm::store
