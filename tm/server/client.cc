#include "server/client.h"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "util/coding.h"

namespace xtm::server {

namespace {

bool DecodeStatus(Decoder* d, Reply* r) {
  uint8_t code = 0;
  if (!d->GetFixed8(&code) || !d->GetBytes(&r->message, kMaxFrame)) return false;
  r->code = static_cast<ReplyCode>(code);
  return true;
}

Status ToStatus(const Reply& r) {
  switch (r.code) {
    case ReplyCode::kOk: return Status::OK();
    case ReplyCode::kError: return Status::InvalidArgument(r.message);
    case ReplyCode::kFenced: return Status::Fenced(r.message);
    case ReplyCode::kUnknown: return Status::UnknownOutcome(r.message);
    case ReplyCode::kDenied: return Status::InvalidArgument(r.message);
  }
  return Status::IOError("xatmd sent an unknown reply code");
}

}  // namespace

Status ServerClient::Connect(const ClientOptions& opts, std::unique_ptr<ServerClient>* out) {
  out->reset();
  std::vector<Address> servers = opts.servers.empty() ? std::vector<Address>{opts.address} : opts.servers;
  // The first server that answers: one leads, the others (active/passive on
  // one decision store) do not listen until they do.
  Status failed;
  for (const Address& a : servers) {
    ClientOptions one = opts;
    one.address = a;
    one.servers = servers;
    std::unique_ptr<ServerClient> c(new ServerClient(one));
    int fd = -1;
    Status s = server::Connect(a, &fd);
    if (!s.ok()) {
      failed = Status::IOError(s.message() + " (is xatmd running? [tm] server names where it listens)");
      continue;
    }
    // A server silent this long while a reply is awaited (it answers every
    // heartbeat at once) is frozen or gone: the read fails and the client
    // resumes, with this server or another. 0 (the admin tool): never.
    SetReadTimeout(fd, opts.reconnect_ms);
    ReplyCode code;
    std::string message;
    s = c->Hello(fd, /*resume=*/false, &code, &message);
    if (!s.ok()) {
      ::close(fd);
      failed = s;
      continue;
    }
    if (code != ReplyCode::kOk) {
      ::close(fd);
      return Status::InvalidArgument("xatmd at " + a.text + " refused the connection: " + message);
    }
    c->fd_ = fd;
    if (!opts.admin) c->heartbeat_ = std::thread([p = c.get()] { p->HeartbeatLoop(); });
    *out = std::move(c);
    return Status::OK();
  }
  return failed;
}

ServerClient::~ServerClient() { Close(); }

Status ServerClient::Hello(int fd, bool resume, ReplyCode* code, std::string* message) {
  std::string p;
  PutFixed32(&p, kProtocolVersion);
  PutFixed32(&p, opts_.admin ? kHelloAdmin : 0);
  PutBytes(&p, opts_.token);
  PutBytes(&p, opts_.client_name);
  PutFixed32(&p, static_cast<uint32_t>(::getpid()));
  PutFixed32(&p, resume ? session_.incarnation : 0);
  PutFixed64(&p, resume ? session_.key : 0);
  PutFixed32(&p, static_cast<uint32_t>(opts_.rms.size()));
  for (const ClientRm& rm : opts_.rms) {
    PutBytes(&p, rm.name);
    p.push_back(static_cast<char>(rm.type));
    PutBytes(&p, rm.identity);
  }
  Status s = WriteAll(fd, EncodeFrame(static_cast<uint8_t>(Kind::kHello), 0, p));
  Frame f;
  if (s.ok()) s = ReadFrame(fd, kMaxFrame, &f);
  if (!s.ok()) return Status::IOError("xatmd at " + opts_.address.text + ": " + s.message());
  Decoder d(f.payload);
  Reply r;
  if (f.kind != (static_cast<uint8_t>(Kind::kHello) | kReplyBit) || !DecodeStatus(&d, &r)) {
    return Status::IOError("xatmd at " + opts_.address.text + " answered HELLO with a malformed frame");
  }
  *code = r.code;
  *message = r.message;
  if (r.code != ReplyCode::kOk) return Status::OK();
  SessionInfo si;
  if (!d.GetBytes(&si.node_id, 64) || !d.GetBytes(&si.node_name, 256) || !d.GetFixed32(&si.incarnation) ||
      !d.GetFixed64(&si.key) || !d.GetFixed32(&si.heartbeat_ms)) {
    return Status::IOError("xatmd at " + opts_.address.text + " answered HELLO with a malformed frame");
  }
  if (!resume) session_ = si;
  return Status::OK();
}

Status ServerClient::Call(Kind kind, std::string payload, std::string* body) {
  Pending p;
  p.kind = static_cast<uint8_t>(kind);
  std::unique_lock<std::mutex> l(mu_);
  // Not sent: the server never saw it, and no other session may make this
  // session's decisions. A COMMIT refused so can never happen.
  if (state_ == State::kFenced || state_ == State::kLost) return Status::Fenced(end_reason_);
  if (state_ != State::kOpen) return Status::UnknownOutcome(end_reason_);
  const uint64_t id = ++next_id_;
  p.frame = EncodeFrame(p.kind, id, payload);
  pending_[id] = &p;
  // Held-back ENDs go out in the same write.
  std::string out = std::move(held_);
  held_.clear();
  out += p.frame;
  if (fd_ >= 0 && !WriteAll(fd_, out).ok()) {
    ::shutdown(fd_, SHUT_RDWR);  // the read below fails, resumes and sends it again
  }
  // The waiting callers take turns reading the connection: a single-threaded
  // client reads its own reply, with no thread in between.
  while (!p.done) {
    if (reading_) {
      cv_.wait(l);
      continue;
    }
    reading_ = true;
    const int fd = fd_;
    if (fd != reader_fd_) {
      reader_.Reset(fd);
      reader_fd_ = fd;
    }
    l.unlock();
    Frame f;
    Status s = fd >= 0 ? reader_.Next(&f) : Status::IOError("not connected");
    if (!s.ok()) {
      l.lock();
      const bool open = state_ == State::kOpen;
      if (!open) {
        FailPendingLocked(state_ == State::kFenced ? ReplyCode::kFenced : ReplyCode::kUnknown, end_reason_);
      }
      l.unlock();
      if (open) Resume();
    }
    l.lock();
    if (s.ok()) DispatchLocked(f);
    reading_ = false;
    cv_.notify_all();
  }
  if (body) *body = std::move(p.reply.body);
  return ToStatus(p.reply);
}

void ServerClient::DispatchLocked(const Frame& f) {
  auto it = pending_.find(f.id);
  if (it == pending_.end() || f.kind != (it->second->kind | kReplyBit)) return;
  Decoder d(f.payload);
  Pending* p = it->second;
  if (!DecodeStatus(&d, &p->reply)) {
    p->reply.code = ReplyCode::kError;
    p->reply.message = "xatmd sent a malformed reply";
  } else {
    p->reply.body = f.payload.substr(1 + 4 + p->reply.message.size());
  }
  p->done = true;
  pending_.erase(it);
}

Status ServerClient::Check() {
  std::lock_guard<std::mutex> l(mu_);
  if (state_ == State::kOpen) return Status::OK();
  if (state_ == State::kClosed) return Status::UnknownOutcome(end_reason_);
  return Status::Fenced(end_reason_);
}

void ServerClient::Send(Kind kind, std::string payload) {
  std::lock_guard<std::mutex> l(mu_);
  if (state_ != State::kOpen || fd_ < 0) return;
  if (kind == Kind::kEnd && held_.size() < 64 * 1024) {
    // Not forced, and lost ENDs are redone by recovery: they wait for the
    // next request or heartbeat instead of waking the server on their own.
    held_ += EncodeFrame(static_cast<uint8_t>(kind), ++next_id_, payload);
    return;
  }
  std::string out = std::move(held_);
  held_.clear();
  out += EncodeFrame(static_cast<uint8_t>(kind), ++next_id_, payload);
  if (!WriteAll(fd_, out).ok()) ::shutdown(fd_, SHUT_RDWR);
}

void ServerClient::SetCounters(uint64_t begun, uint64_t committed, uint64_t rolled_back) {
  std::lock_guard<std::mutex> l(mu_);
  counters_[0] = begun;
  counters_[1] = committed;
  counters_[2] = rolled_back;
}

void ServerClient::FailPendingLocked(ReplyCode code, const std::string& message) {
  for (auto& [id, p] : pending_) {
    p->reply.code = code;
    p->reply.message = message;
    p->done = true;
  }
  pending_.clear();
  cv_.notify_all();
}

bool ServerClient::Resume() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    reader_fd_ = -1;  // what is buffered belongs to the old connection
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts_.reconnect_ms);
  std::string why = "the connection was lost";
  // The server in use first, then the others: one of them may lead now (it
  // then does not know this session, and a new one is needed).
  std::vector<Address> servers = {opts_.address};
  for (const Address& a : opts_.servers) {
    if (a.text != opts_.address.text) servers.push_back(a);
  }
  size_t next = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (state_ == State::kClosed) break;
    }
    int fd = -1;
    const Address& a = servers[next++ % servers.size()];
    Status s = server::Connect(a, &fd);
    if (!s.ok()) {
      why = s.message();
      if (next % servers.size() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    SetReadTimeout(fd, opts_.reconnect_ms);
    opts_.address = a;  // read by this thread only (Hello, and the messages below)
    ReplyCode code;
    std::string message;
    s = Hello(fd, /*resume=*/true, &code, &message);
    if (!s.ok()) {
      ::close(fd);
      why = s.message();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    std::lock_guard<std::mutex> l(mu_);
    if (code == ReplyCode::kFenced) {
      // The server still answers requests it executed before the session
      // was declared dead; everything else gets kFenced on this connection.
      state_ = State::kFenced;
      end_reason_ = "fenced: xatmd declared this session (incarnation " + std::to_string(session_.incarnation) +
                    ") dead and resolved its transactions: " + message +
                    "; its transactions cannot commit any more, and the next one opens a new session";
    } else if (code != ReplyCode::kOk) {
      ::close(fd);
      state_ = State::kLost;
      end_reason_ = "the session with xatmd at " + opts_.address.text + " ended: " + message +
                    "; the outcome of a commit in flight is settled by the server's recovery, and the next "
                    "transaction opens a new session";
      FailPendingLocked(ReplyCode::kUnknown, end_reason_);
      return false;
    }
    fd_ = fd;
    for (auto& [id, p] : pending_) {
      if (!WriteAll(fd_, p->frame).ok()) break;  // the reader finds out
    }
    return true;
  }
  std::lock_guard<std::mutex> l(mu_);
  if (state_ == State::kOpen) {
    state_ = State::kLost;
    end_reason_ = "lost the connection to xatmd at " + opts_.address.text + " (" + why +
                  "); the outcome of a commit in flight is settled by the server's recovery, and the next "
                  "transaction opens a new session";
  }
  FailPendingLocked(state_ == State::kClosed ? ReplyCode::kError : ReplyCode::kUnknown, end_reason_);
  return false;
}

void ServerClient::HeartbeatLoop() {
  const auto every = std::chrono::milliseconds(std::max<uint32_t>(session_.heartbeat_ms, 50));
  for (;;) {
    std::string p;
    {
      std::unique_lock<std::mutex> l(mu_);
      if (cv_.wait_for(l, every, [&] { return state_ != State::kOpen; })) return;
      for (uint64_t c : counters_) PutFixed64(&p, c);
    }
    // Answered by the server: waiting for the answer, this thread reads the
    // connection when no caller does, so a closed connection is noticed (and
    // the session resumed, or found dead) between the application's requests.
    Status s = Call(Kind::kPing, std::move(p), nullptr);
    (void)s;  // a failure ended the session (state_), which ends the loop
  }
}

void ServerClient::Close() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (state_ == State::kOpen && fd_ >= 0) {
      std::string p;
      for (uint64_t c : counters_) PutFixed64(&p, c);
      std::string out = std::move(held_);
      held_.clear();
      out += EncodeFrame(static_cast<uint8_t>(Kind::kBye), ++next_id_, p);
      (void)WriteAll(fd_, out);
    }
    if (state_ == State::kOpen) {
      state_ = State::kClosed;
      end_reason_ = "the connection to xatmd was closed";
    }
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
    cv_.notify_all();
  }
  if (heartbeat_.joinable()) heartbeat_.join();
  std::lock_guard<std::mutex> l(mu_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace xtm::server
