#include "server/server.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <shared_mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "cli/cli.h"
#include "core/gtrid.h"
#include "core/transaction_manager.h"
#include "log/decision_log.h"
#include "server/protocol.h"
#include "util/coding.h"
#include "util/crash_point.h"

namespace xtm::server {
namespace {

using Clock = std::chrono::steady_clock;

// Decision latency buckets (seconds), for the histogram.
constexpr std::array<double, 11> kBuckets = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0};
constexpr size_t kReplyCache = 1024;  // answered requests kept per session

// One client connection. Its thread reads fd; workers and the monitor write
// to it, shut it down and see it closed only under write_mu.
struct Conn {
  int fd = -1;  // read by its own thread; closed (set to -1) under write_mu
  bool tcp = false;
  std::string peer;
  bool has_uid = false;  // a unix socket's peer, from SO_PEERCRED
  uid_t uid = 0;
  pid_t pid = 0;
  // Who is behind the connection, for the audit trail: what the kernel says,
  // not what the peer claims.
  std::string Identity() const {
    return has_uid ? "uid " + std::to_string(uid) + ", pid " + std::to_string(pid) : peer + " peer with the token";
  }
  std::mutex write_mu;
  Status Write(const std::string& frame) {
    std::lock_guard<std::mutex> l(write_mu);
    if (fd < 0) return Status::IOError("the connection is closed");
    return WriteAll(fd, frame);
  }
  void Shutdown() {
    std::lock_guard<std::mutex> l(write_mu);
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }
  void Close() {
    std::lock_guard<std::mutex> l(write_mu);
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

struct Session {
  uint32_t incarnation = 0;
  uint64_t key = 0;
  std::string client;
  uint32_t pid = 0;
  // Shared while one of its decisions is written; exclusive to declare it dead.
  std::shared_mutex fence;
  std::mutex mu;
  enum class State {
    kConnected,     // serving
    kDisconnected,  // may resume until client_timeout_s after `since`
    kDead,          // taken over: its requests are refused
    kEnded,         // said BYE
  } state = State::kConnected;                    // REQUIRES mu (written with fence held exclusively for kDead)
  std::shared_ptr<Conn> conn;                     // REQUIRES mu
  Clock::time_point last_seen = Clock::now();     // REQUIRES mu
  Clock::time_point since = Clock::now();         // REQUIRES mu: when it disconnected / ended
  std::map<uint64_t, std::string> replies;        // REQUIRES mu: id -> reply frame
  std::set<uint64_t> in_progress;                 // REQUIRES mu
  tm::Counters counters;                          // REQUIRES mu: reported by its heartbeats
};

struct Metrics {
  std::mutex mu;
  std::array<uint64_t, kBuckets.size() + 1> latency{};  // REQUIRES mu: per bucket, last is +Inf
  double latency_sum = 0;                               // REQUIRES mu
  uint64_t decisions = 0;                               // REQUIRES mu
  tm::Counters finished;                                // REQUIRES mu: of sessions no longer live
  std::atomic<uint64_t> takeovers{0};
  std::atomic<uint64_t> fenced_requests{0};
  std::atomic<uint64_t> refused_connections{0};
  std::atomic<uint64_t> recoveries{0};
  struct Rm {
    uint64_t in_doubt = 0;
    int64_t oldest_s = 0;
  };
  std::map<std::string, Rm> rms;  // REQUIRES mu: from the last recovery pass
};

class ServerImpl final : public Server {
 public:
  explicit ServerImpl(const tm::TmConfig& cfg) : cfg_(cfg) {}
  ~ServerImpl() override { Stop(); }

  Status Init();
  void Stop() override;
  int tcp_port() const override { return tcp_port_; }
  int metrics_port() const override { return metrics_port_; }
  std::string LostLead() const override {
    std::lock_guard<std::mutex> l(lost_mu_);
    return lost_lead_;
  }

 private:
  void AcceptLoop();
  void Serve(std::shared_ptr<Conn> conn);
  // HELLO: the session, or null for an admin connection. False: drop it.
  bool Hello(const std::shared_ptr<Conn>& conn, const Frame& f, std::shared_ptr<Session>* session, bool* admin,
             bool* dead);
  // more: another frame of the connection is already read. ends: the
  // connection's held ENDs, written with the next COMMIT.
  void Handle(const std::shared_ptr<Conn>& conn, const std::shared_ptr<Session>& session, Frame f, bool more,
              std::vector<log::EndRecord>* ends);
  void FlushEnds(std::vector<log::EndRecord>* ends);
  // Answers what a dead session asks: from the cache, else kFenced.
  void HandleDead(const std::shared_ptr<Conn>& conn, const std::shared_ptr<Session>& session, const Frame& f);
  void Reply(const std::shared_ptr<Conn>& conn, const std::shared_ptr<Session>& session, uint8_t kind, uint64_t id,
             const std::string& payload);
  std::string DoCommit(Session* session, const std::string& payload, const std::vector<log::EndRecord>& ends);
  std::string DoRecord(Kind kind, const Conn& conn, const std::string& payload);
  std::string DoAlive(Session* session, const std::string& payload);
  std::string DoOutcome(const std::string& payload);
  std::string DoBackend(Session* session, const std::string& payload);
  // Why a client using these RMs cannot be served ("" if it can).
  std::string CheckClientRms(const std::vector<ClientRm>& rms);
  // Whether the peer may run admin commands: the token over TCP; root, the
  // server's own user or [server] admin_uids over the unix socket.
  bool AdminAllowed(const Conn& conn) const;
  std::string DoState();
  std::string DoRecover(const std::string& payload);
  std::string DoAdmin(const Conn& conn, const std::string& payload);

  void Submit(std::function<void()> job);
  void WorkerLoop();
  void MonitorLoop();
  void RecoveryLoop();
  void JoinFinishedConnections();
  void Takeover(const std::shared_ptr<Session>& s, const std::string& why);
  void RecoveryPass();
  tm::LiveSet Live();

  void MetricsLoop();
  std::string MetricsText();

  const tm::TmConfig cfg_;
  std::unique_ptr<tm::TransactionManager> tm_;
  std::shared_ptr<spdlog::logger> log_;
  std::string token_;
  Address unix_addr_;
  std::vector<std::pair<int, bool>> listeners_;  // fd, tcp
  int metrics_fd_ = -1;
  int tcp_port_ = 0;
  int metrics_port_ = 0;
  int wake_[2] = {-1, -1};  // written to at Stop: wakes the poll loops
  std::atomic<bool> stopping_{false};
  mutable std::mutex lost_mu_;
  std::string lost_lead_;  // REQUIRES lost_mu_
  std::once_flag stopped_;
  Metrics metrics_;

  std::mutex mu_;
  std::map<uint32_t, std::shared_ptr<Session>> sessions_;  // REQUIRES mu_
  uint32_t next_incarnation_ = 0;                          // REQUIRES mu_
  std::set<std::shared_ptr<Conn>> conns_;                  // REQUIRES mu_
  std::map<uint64_t, std::thread> conn_threads_;           // REQUIRES mu_: by connection number
  std::vector<uint64_t> finished_conns_;                   // REQUIRES mu_: threads to join
  uint64_t next_conn_ = 0;                                 // REQUIRES mu_
  bool recover_now_ = false;                               // REQUIRES mu_
  std::condition_variable monitor_cv_;                     // stopping
  std::condition_variable recovery_cv_;                    // recover_now_, or stopping
  std::mt19937_64 rng_{std::random_device{}()};           // REQUIRES mu_

  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<std::function<void()>> jobs_;  // REQUIRES jobs_mu_

  std::vector<std::thread> threads_;  // accept, workers, monitor, metrics
};

// ---------------------------------------------------------------------------
// Starting and stopping

Status ServerImpl::Init() {
  log_ = std::make_shared<spdlog::logger>("xatmd", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  log_->set_pattern("%Y-%m-%d %H:%M:%S.%e xatmd[%P] %l: %v");
  log_->set_level(spdlog::level::from_str(cfg_.log_level));
  log_->flush_on(spdlog::level::info);

  Status s = ParseAddress(ListenAddress(cfg_), &unix_addr_);
  if (!s.ok()) return s;
  Address tcp;
  const bool want_tcp = !unix_addr_.unix_socket || !cfg_.srv.tcp.empty();
  if (!unix_addr_.unix_socket) {
    tcp = unix_addr_;
  } else if (!cfg_.srv.tcp.empty()) {
    s = ParseAddress("tcp:" + cfg_.srv.tcp, &tcp);
    if (!s.ok()) return Status::InvalidArgument(cfg_.source + ": [server] tcp: " + s.message());
  }
  if (want_tcp) {
    if (cfg_.srv.token_file.empty()) {
      return Status::InvalidArgument(cfg_.source + ": [server] token_file is required to listen on TCP");
    }
    s = ReadTokenFile(cfg_.srv.token_file, &token_);
    if (!s.ok()) return Status::InvalidArgument(cfg_.source + ": [server] token_file: " + s.message());
  }

  // The server's own TM: the log, the RMs, recovery of everything earlier.
  tm::TmConfig own = cfg_;
  own.server.clear();
  s = tm::TransactionManager::Open(own, &tm_);
  if (!s.ok()) return s;
  next_incarnation_ = tm_->incarnation() + 1;
  tm_->SetLiveSet([this] { return Live(); });

  if (::pipe2(wake_, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
  int fd = -1;
  if (unix_addr_.unix_socket) {
    s = Listen(unix_addr_, cfg_.srv.socket_mode, &fd);
    if (!s.ok()) return s;
    listeners_.emplace_back(fd, false);
    log_->info("listening on {} (mode {:o})", unix_addr_.text, cfg_.srv.socket_mode);
  }
  if (want_tcp) {
    s = Listen(tcp, 0, &fd);
    if (!s.ok()) return s;
    listeners_.emplace_back(fd, true);
    tcp_port_ = BoundPort(fd);
    log_->info("listening on tcp:{}:{} (token required)", tcp.host, tcp_port_);
  }
  if (cfg_.srv.metrics != "off") {
    Address m;
    s = ParseAddress("tcp:" + cfg_.srv.metrics, &m);
    if (s.ok()) s = Listen(m, 0, &metrics_fd_);
    if (!s.ok()) return Status::InvalidArgument(cfg_.source + ": [server] metrics: " + s.message());
    metrics_port_ = BoundPort(metrics_fd_);
    log_->info("metrics on http://{}:{}/metrics", m.host, metrics_port_);
  }
  threads_.emplace_back([this] { AcceptLoop(); });
  for (int i = 0; i < 16; ++i) threads_.emplace_back([this] { WorkerLoop(); });
  threads_.emplace_back([this] { MonitorLoop(); });
  threads_.emplace_back([this] { RecoveryLoop(); });
  if (metrics_fd_ >= 0) threads_.emplace_back([this] { MetricsLoop(); });
  log_->info("serving: node {} ({}), {}, {} resource manager(s), client_timeout_s {}, recovery every {} s",
             tm::ToHex(tm_->node_id()), cfg_.node_name.empty() ? "-" : cfg_.node_name,
             cfg_.log_store == tm::TmConfig::LogStore::kPostgres ? "decisions in PostgreSQL" : "log " + cfg_.log_dir,
             cfg_.rms.size(), cfg_.srv.client_timeout_s, cfg_.srv.recovery_interval_s);
  return Status::OK();
}

void ServerImpl::Stop() {
  std::call_once(stopped_, [this] {
    stopping_ = true;
    if (wake_[1] >= 0) (void)!::write(wake_[1], "x", 1);
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& c : conns_) c->Shutdown();
    }
    monitor_cv_.notify_all();  // mu_ was taken after stopping_ was set: no waiter misses it
    recovery_cv_.notify_all();
    jobs_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
    std::map<uint64_t, std::thread> conn_threads;
    {
      std::lock_guard<std::mutex> l(mu_);
      conn_threads.swap(conn_threads_);
    }
    for (auto& [n, t] : conn_threads) t.join();
    for (auto& [fd, tcp] : listeners_) ::close(fd);
    if (unix_addr_.unix_socket && !listeners_.empty()) ::unlink(unix_addr_.path.c_str());
    if (metrics_fd_ >= 0) ::close(metrics_fd_);
    for (int fd : wake_) {
      if (fd >= 0) ::close(fd);
    }
    if (tm_) {
      std::string m;
      tm_->Close(&m);
      tm_.reset();
    }
    if (log_) log_->info("stopped");
  });
}

// ---------------------------------------------------------------------------
// Connections

void ServerImpl::AcceptLoop() {
  std::vector<pollfd> fds;
  for (auto& [fd, tcp] : listeners_) fds.push_back({fd, POLLIN, 0});
  fds.push_back({wake_[0], POLLIN, 0});
  while (!stopping_) {
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;
    if (stopping_) break;
    for (size_t i = 0; i < listeners_.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      int fd = ::accept4(listeners_[i].first, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      auto conn = std::make_shared<Conn>();
      conn->fd = fd;
      conn->tcp = listeners_[i].second;
      conn->peer = conn->tcp ? "tcp" : "unix";
      if (!conn->tcp) {
        ucred cred{};
        socklen_t len = sizeof cred;
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
          conn->has_uid = true;
          conn->uid = cred.uid;
          conn->pid = cred.pid;
        }
      }
      // HELLO must come soon; after it, silence is judged by client_timeout_s.
      SetReadTimeout(fd, 10000);
      std::lock_guard<std::mutex> l(mu_);
      conns_.insert(conn);
      const uint64_t n = ++next_conn_;
      conn_threads_.emplace(n, std::thread([this, conn, n] {
                              Serve(conn);
                              std::lock_guard<std::mutex> g(mu_);
                              finished_conns_.push_back(n);
                            }));
    }
  }
}

void ServerImpl::Serve(std::shared_ptr<Conn> conn) {
  std::shared_ptr<Session> session;
  bool admin = false, dead = false;
  Frame f;
  std::vector<log::EndRecord> ends;  // ENDs held to ride with the next decision
  FrameReader reader(conn->fd, kMaxRequestFrame);
  Status s = reader.Next(&f);
  bool ok = s.ok() && Hello(conn, f, &session, &admin, &dead);
  if (!s.ok() && !s.message().empty() && s.IsCorruption()) log_->warn("connection dropped: {}", s.message());
  if (ok) {
    SetReadTimeout(conn->fd, 0);
  }
  while (ok && !stopping_) {
    s = reader.Next(&f);
    if (!s.ok()) {
      if (s.IsCorruption()) log_->warn("connection of {} dropped: {}", session ? session->client : "admin", s.message());
      break;
    }
    if (dead) {
      HandleDead(conn, session, f);
      continue;
    }
    if (session) {
      std::lock_guard<std::mutex> l(session->mu);
      session->last_seen = Clock::now();
    }
    if (f.kind == static_cast<uint8_t>(Kind::kBye)) {
      if (session) {
        std::lock_guard<std::mutex> l(session->mu);
        Decoder d(f.payload);
        tm::Counters c;
        if (d.GetFixed64(&c.begun) && d.GetFixed64(&c.committed) && d.GetFixed64(&c.rolled_back)) session->counters = c;
        if (session->state == Session::State::kConnected) {
          session->state = Session::State::kEnded;
          session->since = Clock::now();
          log_->info("session {} ({} pid {}) ended", session->incarnation, session->client, session->pid);
        }
      }
      break;
    }
    const uint8_t k = f.kind;
    const bool known = k >= static_cast<uint8_t>(Kind::kCommit) && k <= kLastKind && k != static_cast<uint8_t>(Kind::kBye);
    if (!known) {
      log_->warn("connection of {} dropped: unknown request kind {}", session ? session->client : "admin", k);
      break;
    }
    Handle(conn, session, std::move(f), reader.Buffered(), &ends);
  }
  FlushEnds(&ends);
  if (session) {
    std::lock_guard<std::mutex> l(session->mu);
    if (session->conn == conn && session->state == Session::State::kConnected) {
      session->state = Session::State::kDisconnected;
      session->since = Clock::now();
      log_->info("session {} ({} pid {}) disconnected; it may resume for {} s", session->incarnation,
                 session->client, session->pid, cfg_.srv.client_timeout_s);
    }
    if (session->conn == conn) session->conn.reset();
  }
  conn->Shutdown();
  std::lock_guard<std::mutex> l(mu_);
  conns_.erase(conn);
  conn->Close();
}

bool ServerImpl::Hello(const std::shared_ptr<Conn>& conn, const Frame& f, std::shared_ptr<Session>* out,
                       bool* admin, bool* dead) {
  auto refuse = [&](ReplyCode code, const std::string& why) {
    ++metrics_.refused_connections;
    log_->warn("refused a {} connection: {}", conn->peer, why);
    (void)conn->Write(EncodeFrame(static_cast<uint8_t>(Kind::kHello) | kReplyBit, f.id, EncodeStatus(code, why)));
    return false;
  };
  if (f.kind != static_cast<uint8_t>(Kind::kHello)) return refuse(ReplyCode::kDenied, "the first request must be HELLO");
  Decoder d(f.payload);
  uint32_t version = 0, flags = 0, pid = 0, resume = 0;
  uint64_t key = 0;
  std::string token, client;
  if (!d.GetFixed32(&version) || !d.GetFixed32(&flags) || !d.GetBytes(&token, 4096) || !d.GetBytes(&client, 256) ||
      !d.GetFixed32(&pid) || !d.GetFixed32(&resume) || !d.GetFixed64(&key)) {
    return refuse(ReplyCode::kDenied, "malformed HELLO");
  }
  if (version != kProtocolVersion) {
    return refuse(ReplyCode::kDenied, "protocol version " + std::to_string(version) + " is not supported (this xatmd speaks " +
                                          std::to_string(kProtocolVersion) + ")");
  }
  std::vector<ClientRm> rms;
  uint32_t n_rms = 0;
  if (!d.GetFixed32(&n_rms) || n_rms > 1024) return refuse(ReplyCode::kDenied, "malformed HELLO");
  for (uint32_t i = 0; i < n_rms; ++i) {
    ClientRm r;
    if (!d.GetBytes(&r.name, 256) || !d.GetFixed8(&r.type) || !d.GetBytes(&r.identity, 256)) {
      return refuse(ReplyCode::kDenied, "malformed HELLO");
    }
    rms.push_back(std::move(r));
  }
  if (!d.done()) return refuse(ReplyCode::kDenied, "malformed HELLO");
  if (conn->tcp && !SameSecret(token, token_)) return refuse(ReplyCode::kDenied, "wrong token");
  *admin = (flags & kHelloAdmin) != 0;
  if (*admin && !AdminAllowed(*conn)) {
    return refuse(ReplyCode::kDenied, "uid " + std::to_string(conn->uid) +
                                          " may not run admin commands through xatmd: add it to [server] admin_uids "
                                          "of the server's configuration");
  }
  std::shared_ptr<Session> s;
  ReplyCode code = ReplyCode::kOk;
  std::string message;
  if (*admin) {
    // An admin tool: no session.
  } else if (resume == 0) {
    if (std::string why = CheckClientRms(rms); !why.empty()) return refuse(ReplyCode::kDenied, why);
    s = std::make_shared<Session>();
    s->client = client;
    s->pid = pid;
    s->conn = conn;
    std::lock_guard<std::mutex> l(mu_);
    s->incarnation = next_incarnation_;
    s->key = rng_();
    // The incarnation is durable before anyone uses it: a restarted server
    // never hands it out again.
    Status st = tm_->store()->RecordIncarnation(s->incarnation);
    if (!st.ok()) return refuse(ReplyCode::kError, "cannot record the new session: " + st.message());
    ++next_incarnation_;
    sessions_[s->incarnation] = s;
    log_->info("session {} begins: {} pid {} over {}", s->incarnation, client, pid, conn->peer);
  } else {
    std::lock_guard<std::mutex> l(mu_);
    auto it = sessions_.find(resume);
    if (it == sessions_.end() || it->second->key != key) {
      return refuse(ReplyCode::kDenied, "unknown session " + std::to_string(resume) +
                                            " (the server restarted, or the session ended long ago); its "
                                            "transactions were resolved by recovery");
    }
    s = it->second;
    std::lock_guard<std::mutex> sl(s->mu);
    if (s->state == Session::State::kDead) {
      code = ReplyCode::kFenced;
      message = "the session was declared dead after " + std::to_string(cfg_.srv.client_timeout_s) +
                " s without a heartbeat and its transactions were resolved";
      *dead = true;
      ++metrics_.fenced_requests;
      log_->warn("session {} ({} pid {}) came back after it was declared dead: fenced", s->incarnation, s->client, pid);
    } else if (s->state == Session::State::kEnded) {
      return refuse(ReplyCode::kDenied, "session " + std::to_string(resume) + " has ended");
    } else {
      if (s->conn && s->conn != conn) s->conn->Shutdown();
      s->conn = conn;
      s->state = Session::State::kConnected;
      s->last_seen = Clock::now();
      log_->info("session {} ({} pid {}) resumed", s->incarnation, s->client, pid);
    }
  }
  std::string p = EncodeStatus(code, message);
  PutBytes(&p, tm_->store()->node_id());
  PutBytes(&p, tm_->store()->node_name());
  PutFixed32(&p, s ? s->incarnation : 0);
  PutFixed64(&p, s ? s->key : 0);
  PutFixed32(&p, static_cast<uint32_t>(cfg_.srv.client_timeout_s * 1000 / 4));
  *out = s;
  return conn->Write(EncodeFrame(static_cast<uint8_t>(Kind::kHello) | kReplyBit, f.id, p)).ok();
}

void ServerImpl::Reply(const std::shared_ptr<Conn>& conn, const std::shared_ptr<Session>& session, uint8_t kind,
                       uint64_t id, const std::string& payload) {
  const std::string frame = EncodeFrame(kind | kReplyBit, id, payload);
  if (!session) {
    (void)conn->Write(frame);
    return;
  }
  std::shared_ptr<Conn> to;
  {
    std::lock_guard<std::mutex> l(session->mu);
    session->in_progress.erase(id);
    session->replies[id] = frame;
    while (session->replies.size() > kReplyCache) session->replies.erase(session->replies.begin());
    to = session->conn;
  }
  // The reply is lost on the way: the client must resume and ask again.
  if (to && XATM_FAULT_POINT("server.reply.drop")) {
    log_->warn("fault point: dropping the connection instead of answering request {}", id);
    to->Shutdown();
    return;
  }
  // To the session's connection now: it may have resumed on another.
  if (to) (void)to->Write(frame);
}

void ServerImpl::FlushEnds(std::vector<log::EndRecord>* ends) {
  for (const log::EndRecord& e : *ends) {
    tm_->store()->End(e);  // not forced; a lost END is redone by recovery
  }
  ends->clear();
}

void ServerImpl::Handle(const std::shared_ptr<Conn>& conn, const std::shared_ptr<Session>& session, Frame f,
                        bool more, std::vector<log::EndRecord>* ends) {
  const Kind kind = static_cast<Kind>(f.kind);
  switch (kind) {
    case Kind::kPing: {
      Decoder d(f.payload);
      tm::Counters c;
      if (session && d.GetFixed64(&c.begun) && d.GetFixed64(&c.committed) && d.GetFixed64(&c.rolled_back)) {
        std::lock_guard<std::mutex> l(session->mu);
        session->counters = c;
      }
      // Answered (never cached: a PING sent again is answered again), so that
      // the client's heartbeat notices a closed connection by itself.
      (void)conn->Write(EncodeFrame(f.kind | kReplyBit, f.id, EncodeStatus(ReplyCode::kOk, "")));
      return;
    }
    case Kind::kEnd: {
      log::EndRecord r;
      tm::GtridParts p;
      if (!session || !log::Decode(f.payload, &r).ok()) return;
      // Only its own transactions: an END of another session's COMMIT would
      // make recovery forget branches still to commit.
      if (!tm::ParseGtrid(r.gtrid, &p) || p.node_id != tm_->node_id() || p.incarnation != session->incarnation) {
        log_->warn("ignored an END from session {} ({} pid {}) for {}, a transaction that is not its own",
                   session->incarnation, session->client, session->pid, tm::ToHex(r.gtrid));
        return;
      }
      ends->push_back(std::move(r));
      // A decision usually follows in the same read: the ENDs go with it.
      if (!more) FlushEnds(ends);
      return;
    }
    case Kind::kState:
      Reply(conn, session, f.kind, f.id, DoState());
      return;
    default: break;
  }
  if (session) {
    std::lock_guard<std::mutex> l(session->mu);
    auto cached = session->replies.find(f.id);
    if (cached != session->replies.end()) {
      (void)conn->Write(cached->second);  // a request sent again: the same answer
      return;
    }
    if (!session->in_progress.insert(f.id).second) return;  // its answer is on the way
  }
  std::vector<log::EndRecord> with;
  if (kind == Kind::kCommit) {
    with.swap(*ends);
  } else {
    FlushEnds(ends);
  }
  auto job = [this, conn, session, f = std::move(f), kind, with = std::move(with)] {
    std::string reply;
    switch (kind) {
      case Kind::kCommit:
        reply = session ? DoCommit(session.get(), f.payload, with)
                        : EncodeStatus(ReplyCode::kError, "an admin connection makes no decisions");
        break;
      case Kind::kHeuristic:
      case Kind::kForget: reply = DoRecord(kind, *conn, f.payload); break;
      case Kind::kRecover: reply = DoRecover(f.payload); break;
      case Kind::kAdmin: reply = DoAdmin(*conn, f.payload); break;
      case Kind::kAlive:
        reply = session ? DoAlive(session.get(), f.payload) : EncodeStatus(ReplyCode::kError, "no session");
        break;
      case Kind::kOutcome: reply = session ? DoOutcome(f.payload) : EncodeStatus(ReplyCode::kError, "no session"); break;
      case Kind::kBackend:
        reply = session ? DoBackend(session.get(), f.payload) : EncodeStatus(ReplyCode::kError, "no session");
        break;
      default: reply = EncodeStatus(ReplyCode::kError, "unexpected request"); break;
    }
    Reply(conn, session, f.kind, f.id, reply);
  };
  // A decision with nothing behind it on the connection (a single-threaded
  // client) is written here: no hand-off to a worker on the way to the
  // fsync. Requests of a multi-threaded client that arrive together go to the
  // workers, so that their decisions share one group commit.
  pollfd next{conn->fd, POLLIN, 0};
  if (kind == Kind::kCommit && !more && ::poll(&next, 1, 0) == 0) {
    job();
  } else {
    Submit(std::move(job));
  }
}

void ServerImpl::HandleDead(const std::shared_ptr<Conn>& conn, const std::shared_ptr<Session>& session,
                            const Frame& f) {
  const Kind kind = static_cast<Kind>(f.kind);
  if (kind == Kind::kEnd || kind == Kind::kBye) return;
  std::string frame;
  {
    std::lock_guard<std::mutex> l(session->mu);
    auto cached = session->replies.find(f.id);
    if (cached != session->replies.end()) frame = cached->second;
  }
  if (frame.empty()) {
    ++metrics_.fenced_requests;
    frame = EncodeFrame(f.kind | kReplyBit, f.id,
                        EncodeStatus(ReplyCode::kFenced, "session " + std::to_string(session->incarnation) +
                                                             " was declared dead; the server resolved its transactions"));
    if (kind == Kind::kCommit) {
      log_->warn("refused a commit from dead session {} ({} pid {})", session->incarnation, session->client,
                 session->pid);
    }
  }
  (void)conn->Write(frame);
}

// ---------------------------------------------------------------------------
// Requests

std::string ServerImpl::DoCommit(Session* session, const std::string& payload,
                                 const std::vector<log::EndRecord>& ends) {
  // Refused: the ENDs that came with it are written on their own.
  auto refuse = [&](ReplyCode code, const std::string& why) {
    std::vector<log::EndRecord> e(ends);
    FlushEnds(&e);
    return EncodeStatus(code, why);
  };
  log::CommitRecord r;
  if (!log::Decode(payload, &r).ok()) return refuse(ReplyCode::kError, "malformed COMMIT");
  tm::GtridParts p;
  if (!tm::ParseGtrid(r.gtrid, &p) || p.node_id != tm_->node_id() || p.incarnation != session->incarnation) {
    return refuse(ReplyCode::kError, "COMMIT of a transaction that is not this session's");
  }
  std::shared_lock<std::shared_mutex> fence(session->fence);
  {
    std::lock_guard<std::mutex> l(session->mu);
    if (session->state == Session::State::kDead) {
      ++metrics_.fenced_requests;
      log_->warn("refused the commit of {} from dead session {}", tm::ToHex(r.gtrid), session->incarnation);
      return refuse(ReplyCode::kFenced, "session " + std::to_string(session->incarnation) +
                                            " was declared dead; the server rolled its transactions back");
    }
  }
  XATM_CRASH_POINT("server.commit.before_decision");
  const auto t0 = Clock::now();
  // Through the server's own store session: ended only if another server
  // took the node over (then the commit is refused, the epoch fences it).
  Status s = tm_->store()->Commit(r, tm_->store()->Current().get(), ends);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (s.ok()) {
    // If we crash now, the commit is decided: recovery finishes phase two.
    XATM_CRASH_POINT("server.commit.after_decision");
    std::lock_guard<std::mutex> l(metrics_.mu);
    size_t b = 0;
    while (b < kBuckets.size() && secs > kBuckets[b]) ++b;
    ++metrics_.latency[b];
    metrics_.latency_sum += secs;
    ++metrics_.decisions;
    return EncodeStatus(ReplyCode::kOk, "");
  }
  log_->error("decision log: {}", s.message());
  return EncodeStatus(s.IsUnknownOutcome() ? ReplyCode::kUnknown : ReplyCode::kError, "decision log: " + s.message());
}

std::string ServerImpl::DoRecord(Kind kind, const Conn& conn, const std::string& payload) {
  Status s;
  if (kind == Kind::kHeuristic) {
    log::HeuristicRecord r;
    if (!log::Decode(payload, &r).ok()) return EncodeStatus(ReplyCode::kError, "malformed HEURISTIC");
    // The audit trail names who is behind the connection, as the kernel
    // tells it; the name the client gives is kept as what it said.
    r.who += " (" + conn.Identity() + ")";
    s = tm_->store()->Heuristic(r);
  } else {
    log::ForgetRecord r;
    if (!log::Decode(payload, &r).ok()) return EncodeStatus(ReplyCode::kError, "malformed FORGET");
    if (!AdminAllowed(conn)) {
      return EncodeStatus(ReplyCode::kError, "forgetting a heuristic outcome is an admin command, and " +
                                                 conn.Identity() + " may not run it: add the uid to [server] admin_uids");
    }
    s = tm_->store()->Forget(r);
  }
  if (s.ok()) return EncodeStatus(ReplyCode::kOk, "");
  return EncodeStatus(s.IsUnknownOutcome() ? ReplyCode::kUnknown : ReplyCode::kError, "decision log: " + s.message());
}

std::string ServerImpl::DoAlive(Session* session, const std::string& payload) {
  Decoder d(payload);
  std::string gtrid;
  if (!d.GetBytes(&gtrid, 1024)) return EncodeStatus(ReplyCode::kError, "malformed ALIVE");
  // Shared: a takeover (exclusive) is not under way, nor can it start
  // before the answer is made.
  std::shared_lock<std::shared_mutex> fence(session->fence);
  {
    std::lock_guard<std::mutex> l(session->mu);
    if (session->state == Session::State::kDead) {
      return EncodeStatus(ReplyCode::kFenced, "session " + std::to_string(session->incarnation) +
                                                  " was declared dead; the server resolved its transactions");
    }
  }
  log::LogState st;
  if (Status s = tm_->store()->State(&st); !s.ok()) return EncodeStatus(ReplyCode::kError, s.message());
  for (const auto& [key, h] : st.heuristics) {
    if (std::get<0>(key) == gtrid) {
      return EncodeStatus(ReplyCode::kError, tm::ToHex(gtrid) + " was decided by hand by " + h.who + ": " + h.why);
    }
  }
  return EncodeStatus(ReplyCode::kOk, "");
}

std::string ServerImpl::DoOutcome(const std::string& payload) {
  Decoder d(payload);
  std::string gtrid;
  uint32_t n = 0;
  std::vector<std::string> prepared_in;
  if (!d.GetBytes(&gtrid, 1024) || !d.GetFixed32(&n) || n > 1024) return EncodeStatus(ReplyCode::kError, "malformed OUTCOME");
  for (uint32_t i = 0; i < n; ++i) {
    std::string rm;
    if (!d.GetBytes(&rm, 256)) return EncodeStatus(ReplyCode::kError, "malformed OUTCOME");
    prepared_in.push_back(std::move(rm));
  }
  if (!d.done()) return EncodeStatus(ReplyCode::kError, "malformed OUTCOME");
  bool committed = false;
  if (Status s = tm_->OutcomeOf(gtrid, prepared_in, &committed); !s.ok()) {
    return EncodeStatus(ReplyCode::kError, s.message());
  }
  std::string p = EncodeStatus(ReplyCode::kOk, "");
  p.push_back(committed ? 1 : 0);
  return p;
}

std::string ServerImpl::DoBackend(Session* session, const std::string& payload) {
  Decoder d(payload);
  tm::BackendId b;
  uint32_t pid = 0;
  if (!d.GetBytes(&b.rm, 256) || !d.GetFixed32(&pid) || !d.GetBytes(&b.start, 256) || !d.done()) {
    return EncodeStatus(ReplyCode::kError, "malformed BACKEND");
  }
  b.pid = static_cast<int>(pid);
  // Registered before the session's next branch runs on it, and durably (a
  // restarted server ends it too): a dead session gets no new backend that a
  // takeover would not know. Shared: no takeover is under way meanwhile.
  std::shared_lock<std::shared_mutex> fence(session->fence);
  {
    std::lock_guard<std::mutex> l(session->mu);
    if (session->state == Session::State::kDead) {
      return EncodeStatus(ReplyCode::kFenced, "session " + std::to_string(session->incarnation) +
                                                  " was declared dead; the server resolved its transactions");
    }
  }
  if (Status s = tm_->store()->RegisterBackend(session->incarnation, b, nullptr); !s.ok()) {
    // Not a commit point (decisions stay fenced by their locks): a backend a
    // restarted server does not know is found by its session tag.
    log_->warn("cannot record backend {} of session {}: {}; a restarted server finds it only by its session tag",
               b.pid, session->incarnation, s.message());
  }
  return EncodeStatus(ReplyCode::kOk, "");
}

std::string ServerImpl::CheckClientRms(const std::vector<ClientRm>& rms) {
  std::string missing, other;
  for (const ClientRm& c : rms) {
    const tm::Rm* mine = tm_->FindRm(c.name);
    const auto type = static_cast<tm::RmSpec::Type>(c.type);
    if (mine == nullptr || mine->spec.type != type) {
      missing += (missing.empty() ? "" : ", ") + ("\"" + c.name + "\" (" + tm::RmTypeName(type) + ")");
      continue;
    }
    if (mine->x->HasIdentity() && !c.identity.empty()) {
      const std::string id = mine->x->Identity();
      if (!id.empty() && id != c.identity) other += (other.empty() ? "" : ", ") + ("\"" + c.name + "\" (" + mine->spec.path + ")");
    }
  }
  if (!missing.empty()) {
    return "this xatmd cannot resolve the client's transactions: it has no resource manager " + missing +
           " (it would not see their decisions, and would presume them aborted). Add the same [rm.NAME] sections "
           "to the server's configuration and restart it";
  }
  if (!other.empty()) {
    return "the server's resource manager " + other +
           " is another database than the client's of the same name: give both the same file";
  }
  return "";
}

bool ServerImpl::AdminAllowed(const Conn& conn) const {
  if (conn.tcp) return true;  // the token was checked at HELLO
  if (!conn.has_uid) return false;
  if (conn.uid == 0 || conn.uid == ::geteuid()) return true;
  for (unsigned u : cfg_.srv.admin_uids) {
    if (u == conn.uid) return true;
  }
  return false;
}

std::string ServerImpl::DoState() {
  std::string snapshot, body;
  log::LogState st;
  if (Status s = tm_->store()->State(&st); !s.ok()) return EncodeStatus(ReplyCode::kError, s.message());
  uint32_t n = 0;
  for (const auto& [g, c] : st.open_commits) {
    body.push_back(static_cast<char>(log::RecordType::kCommit));
    PutBytes(&body, log::Encode(c));
    ++n;
  }
  for (const auto& [k, h] : st.heuristics) {
    body.push_back(static_cast<char>(log::RecordType::kHeuristic));
    PutBytes(&body, log::Encode(h));
    ++n;
  }
  std::string p = EncodeStatus(ReplyCode::kOk, "");
  PutFixed32(&p, n);
  return p + body;
}

std::string ServerImpl::DoRecover(const std::string& payload) {
  Decoder d(payload);
  uint32_t dry = 0;
  if (!d.GetFixed32(&dry)) return EncodeStatus(ReplyCode::kError, "malformed RECOVER");
  tm::RecoveryReport r;
  Status s = tm_->Recover(dry != 0, &r);
  if (!s.ok()) return EncodeStatus(ReplyCode::kError, s.message());
  std::string p = EncodeStatus(ReplyCode::kOk, "");
  PutFixed32(&p, static_cast<uint32_t>(r.committed));
  PutFixed32(&p, static_cast<uint32_t>(r.rolled_back));
  PutFixed32(&p, static_cast<uint32_t>(r.ended));
  PutFixed32(&p, static_cast<uint32_t>(r.left + static_cast<int>(r.unreachable.size())));
  PutFixed32(&p, static_cast<uint32_t>(r.actions.size()));
  for (const std::string& a : r.actions) PutBytes(&p, a);
  return p;
}

std::string ServerImpl::DoAdmin(const Conn& conn, const std::string& payload) {
  Decoder d(payload);
  uint32_t n = 0;
  std::vector<std::string> args;
  if (!d.GetFixed32(&n) || n > 64) return EncodeStatus(ReplyCode::kError, "malformed ADMIN");
  for (uint32_t i = 0; i < n; ++i) {
    std::string a;
    if (!d.GetBytes(&a, 4096)) return EncodeStatus(ReplyCode::kError, "malformed ADMIN");
    args.push_back(a);
  }
  if (!AdminAllowed(conn)) {
    return EncodeStatus(ReplyCode::kError, conn.Identity() +
                                               " may not run admin commands through xatmd: add the uid to [server] "
                                               "admin_uids of the server's configuration");
  }
  // The operator the client names is what it says; the audit trail adds who
  // the kernel says is behind the connection.
  bool named = false;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--operator") {
      args[i + 1] += " (" + conn.Identity() + ")";
      named = true;
    }
  }
  if (!named) args.insert(args.end(), {"--operator", conn.Identity()});
  std::ostringstream out, err;
  const int code = cli::RunOnServer(args, tm_.get(), out, err);
  log_->info("admin: xatm {} -> exit {}", [&] {
    std::string s;
    for (const std::string& a : args) s += (s.empty() ? "" : " ") + a;
    return s;
  }(), code);
  std::string p = EncodeStatus(ReplyCode::kOk, "");
  PutFixed32(&p, static_cast<uint32_t>(code));
  PutBytes(&p, out.str());
  PutBytes(&p, err.str());
  return p;
}

void ServerImpl::Submit(std::function<void()> job) {
  std::lock_guard<std::mutex> l(jobs_mu_);
  jobs_.push_back(std::move(job));
  jobs_cv_.notify_one();
}

void ServerImpl::WorkerLoop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> l(jobs_mu_);
      jobs_cv_.wait(l, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

// ---------------------------------------------------------------------------
// Failure detection, takeover and continuous recovery

tm::LiveSet ServerImpl::Live() {
  tm::LiveSet l;
  std::lock_guard<std::mutex> g(mu_);
  l.max = next_incarnation_ - 1;
  l.live.insert(tm_->incarnation());
  for (const auto& [inc, s] : sessions_) {
    std::lock_guard<std::mutex> sl(s->mu);
    if (s->state == Session::State::kConnected || s->state == Session::State::kDisconnected) l.live.insert(inc);
  }
  return l;
}

void ServerImpl::Takeover(const std::shared_ptr<Session>& s, const std::string& why) {
  {
    // No decision of the session is being written once this is held.
    std::unique_lock<std::shared_mutex> fence(s->fence);
    std::lock_guard<std::mutex> l(s->mu);
    if (s->state == Session::State::kDead || s->state == Session::State::kEnded) return;
    s->state = Session::State::kDead;
    s->since = Clock::now();
    if (s->conn) s->conn->Shutdown();
  }
  ++metrics_.takeovers;
  log_->warn("session {} ({} pid {}) declared dead: {}; taking over its transactions", s->incarnation, s->client,
             s->pid, why);
  std::lock_guard<std::mutex> l(mu_);
  recover_now_ = true;
  recovery_cv_.notify_all();
}

// A connection's thread, once it has returned, is joined here: a server that
// runs for months keeps no dead threads' stacks.
void ServerImpl::JoinFinishedConnections() {
  std::vector<std::thread> done;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (uint64_t n : finished_conns_) {
      auto it = conn_threads_.find(n);
      if (it == conn_threads_.end()) continue;
      done.push_back(std::move(it->second));
      conn_threads_.erase(it);
    }
    finished_conns_.clear();
  }
  for (std::thread& t : done) t.join();
}

// Failure detection: every 100 ms, never held up by recovery (which may wait
// for an RM, or for a lock a frozen client holds), so that a silent session
// is declared dead within client_timeout_s and a tick.
void ServerImpl::MonitorLoop() {
  const auto timeout = std::chrono::seconds(cfg_.srv.client_timeout_s);
  while (!stopping_) {
    std::vector<std::pair<std::shared_ptr<Session>, std::string>> dying;
    {
      std::unique_lock<std::mutex> l(mu_);
      monitor_cv_.wait_for(l, std::chrono::milliseconds(100), [&] { return stopping_.load(); });
      if (stopping_) break;
      const auto now = Clock::now();
      for (auto it = sessions_.begin(); it != sessions_.end();) {
        auto& s = it->second;
        std::lock_guard<std::mutex> sl(s->mu);
        if (s->state == Session::State::kConnected && now - s->last_seen > timeout) {
          dying.emplace_back(s, "no heartbeat for " + std::to_string(cfg_.srv.client_timeout_s) + " s");
        } else if (s->state == Session::State::kDisconnected && now - s->since > timeout) {
          dying.emplace_back(s, "its connection closed " + std::to_string(cfg_.srv.client_timeout_s) + " s ago");
        }
        // Finished sessions are forgotten after an hour (a dead one's late
        // requests are answered until then).
        if ((s->state == Session::State::kEnded || s->state == Session::State::kDead) && now - s->since > std::chrono::hours(1)) {
          std::lock_guard<std::mutex> ml(metrics_.mu);
          metrics_.finished.begun += s->counters.begun;
          metrics_.finished.committed += s->counters.committed;
          metrics_.finished.rolled_back += s->counters.rolled_back;
          it = sessions_.erase(it);
          continue;
        }
        ++it;
      }
    }
    JoinFinishedConnections();
    for (auto& [s, why] : dying) Takeover(s, why);  // each asks the recovery thread for a pass
  }
}

// Recovery passes: at once after a takeover, and every recovery_interval_s.
void ServerImpl::RecoveryLoop() {
  const auto interval = std::chrono::seconds(cfg_.srv.recovery_interval_s);
  auto next_recovery = Clock::now();
  while (!stopping_) {
    {
      std::unique_lock<std::mutex> l(mu_);
      recovery_cv_.wait_until(l, next_recovery, [&] { return stopping_ || recover_now_; });
      if (stopping_) break;
      recover_now_ = false;
    }
    RecoveryPass();
    next_recovery = Clock::now() + interval;
  }
}

void ServerImpl::RecoveryPass() {
  // Another xatmd claimed the node (this one was paused or cut off past its
  // lease): its decisions are refused already; it stops serving.
  if (Status held = tm_->store()->Current()->Check(); !held.ok()) {
    std::lock_guard<std::mutex> l(lost_mu_);
    if (lost_lead_.empty()) log_->error("this server no longer leads: {}; it stops", held.message());
    lost_lead_ = held.message();
    return;
  }
  tm::RecoveryReport r;
  Status s = tm_->Recover(false, &r);
  if (!s.ok()) log_->warn("recovery: {}", s.message());
  std::vector<tm::InDoubt> list;
  std::vector<std::string> unreachable;
  if (!tm_->ListInDoubt(&list, &unreachable, /*decide_rows=*/false).ok()) return;  // counts only
  std::map<std::string, Metrics::Rm> rms;
  for (const auto& rm : tm_->rms()) rms[rm->spec.name];
  for (const tm::InDoubt& d : list) {
    Metrics::Rm& m = rms[d.rm];
    ++m.in_doubt;
    m.oldest_s = std::max<int64_t>(m.oldest_s, d.age_s);  // known for decided branches
  }
  std::lock_guard<std::mutex> l(metrics_.mu);
  metrics_.rms = rms;
  ++metrics_.recoveries;
}

// ---------------------------------------------------------------------------
// Metrics: Prometheus text over a minimal HTTP/1.0

std::string ServerImpl::MetricsText() {
  std::ostringstream o;
  tm::Counters total;
  int connected = 0, live = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [inc, s] : sessions_) {
      std::lock_guard<std::mutex> sl(s->mu);
      total.begun += s->counters.begun;
      total.committed += s->counters.committed;
      total.rolled_back += s->counters.rolled_back;
      connected += s->state == Session::State::kConnected;
      live += s->state == Session::State::kConnected || s->state == Session::State::kDisconnected;
    }
  }
  const log::LogStats ls = tm_->store()->Stats();
  std::lock_guard<std::mutex> l(metrics_.mu);
  total.begun += metrics_.finished.begun;
  total.committed += metrics_.finished.committed;
  total.rolled_back += metrics_.finished.rolled_back;
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n" << name << " " << v << "\n";
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n" << name << " " << v << "\n";
  };
  counter("xatm_transactions_begun_total", "Global transactions begun by clients (as of their last heartbeat).", total.begun);
  counter("xatm_transactions_committed_total", "Global transactions committed by clients (as of their last heartbeat).", total.committed);
  counter("xatm_transactions_rolled_back_total", "Global transactions rolled back by clients (as of their last heartbeat).", total.rolled_back);
  counter("xatm_decisions_total", "COMMIT decisions made durable for clients.", metrics_.decisions);
  o << "# HELP xatm_decision_latency_seconds Time from a COMMIT request to its durable decision.\n"
    << "# TYPE xatm_decision_latency_seconds histogram\n";
  uint64_t cum = 0;
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    cum += metrics_.latency[i];
    o << "xatm_decision_latency_seconds_bucket{le=\"" << kBuckets[i] << "\"} " << cum << "\n";
  }
  cum += metrics_.latency[kBuckets.size()];
  o << "xatm_decision_latency_seconds_bucket{le=\"+Inf\"} " << cum << "\n"
    << "xatm_decision_latency_seconds_sum " << metrics_.latency_sum << "\n"
    << "xatm_decision_latency_seconds_count " << cum << "\n";
  counter("xatm_group_commit_batches_total", "Writes of the decision log (each one group of records).", ls.batches);
  counter("xatm_group_commit_records_total", "Records written to the decision log.", ls.records);
  gauge("xatm_group_commit_batch_records_max", "Most records written in one batch.", static_cast<double>(ls.max_batch));
  counter("xatm_log_syncs_total", "fdatasync calls of the decision log.", ls.syncs);
  o << "# HELP xatm_indoubt_branches Prepared branches left in doubt, per resource manager (last recovery pass).\n"
    << "# TYPE xatm_indoubt_branches gauge\n";
  for (const auto& [rm, m] : metrics_.rms) o << "xatm_indoubt_branches{rm=\"" << rm << "\"} " << m.in_doubt << "\n";
  o << "# HELP xatm_indoubt_oldest_age_seconds Age of the oldest decided in-doubt branch, per resource manager.\n"
    << "# TYPE xatm_indoubt_oldest_age_seconds gauge\n";
  for (const auto& [rm, m] : metrics_.rms) o << "xatm_indoubt_oldest_age_seconds{rm=\"" << rm << "\"} " << m.oldest_s << "\n";
  o << "# HELP xatm_server_leading Whether this xatmd serves its node (one of several on a postgresql store).\n"
    << "# TYPE xatm_server_leading gauge\nxatm_server_leading{node=\"" << tm_->store()->node_name() << "\",listen=\""
    << ListenAddress(cfg_) << "\"} " << (LostLead().empty() ? 1 : 0) << "\n";
  gauge("xatm_clients_connected", "Client sessions connected now.", connected);
  gauge("xatm_sessions_live", "Client sessions connected or allowed to resume.", live);
  counter("xatm_takeovers_total", "Client sessions declared dead and taken over.", metrics_.takeovers);
  counter("xatm_fenced_requests_total", "Requests refused because their session was declared dead.", metrics_.fenced_requests);
  counter("xatm_refused_connections_total", "Connections refused (bad token, bad HELLO).", metrics_.refused_connections);
  counter("xatm_recovery_passes_total", "Recovery passes run by the server (each updates the in-doubt gauges).",
          metrics_.recoveries);
  return o.str();
}

void ServerImpl::MetricsLoop() {
  pollfd fds[2] = {{metrics_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
  while (!stopping_) {
    if (::poll(fds, 2, -1) < 0) continue;
    if (stopping_) break;
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = ::accept4(metrics_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    SetReadTimeout(fd, 2000);
    std::string req;
    char buf[1024];
    while (req.size() < 8192 && req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    std::string body, status = "200 OK";
    if (req.rfind("GET /metrics", 0) == 0) {
      body = MetricsText();
    } else {
      status = "404 Not Found";
      body = "xatmd serves GET /metrics\n";
    }
    const std::string resp = "HTTP/1.0 " + status + "\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    (void)WriteAll(fd, resp);
    ::close(fd);
  }
}

}  // namespace

std::string ListenAddress(const tm::TmConfig& cfg) { return cfg.srv.listen.empty() ? cfg.server : cfg.srv.listen; }

Status CheckServerConfig(const tm::TmConfig& cfg) {
  if (cfg.server.empty()) {
    return Status::InvalidArgument(cfg.source + ": [tm] server is required: the address xatmd listens on "
                                                "(unix:/run/xatm/xatmd.sock)");
  }
  const bool file = cfg.log_store == tm::TmConfig::LogStore::kFile;
  if (file && cfg.log_dir.empty()) {
    return Status::InvalidArgument(cfg.source + ": [tm] log_dir is required: the server's decision log");
  }
  std::vector<Address> servers;
  Status s = ParseAddressList(cfg.server, &servers);
  if (!s.ok()) return Status::InvalidArgument(cfg.source + ": [tm] server: " + s.message());
  if (servers.size() > 1) {
    if (file) {
      return Status::InvalidArgument(cfg.source + ": [tm] server lists " + std::to_string(servers.size()) +
                                     " servers: several xatmd share the decisions only in a postgresql store "
                                     "([tm] log_store = postgresql)");
    }
    if (cfg.srv.listen.empty()) {
      return Status::InvalidArgument(cfg.source + ": [tm] server lists " + std::to_string(servers.size()) +
                                     " servers: [server] listen names the one this xatmd listens on");
    }
  }
  if (!cfg.srv.listen.empty()) {
    bool listed = false;
    for (const Address& x : servers) listed = listed || x.text == cfg.srv.listen;
    if (!listed) {
      return Status::InvalidArgument(cfg.source + ": [server] listen = " + cfg.srv.listen +
                                     " is not one of [tm] server (" + cfg.server + "): clients would not find it");
    }
  }
  Address a;
  s = ParseAddress(ListenAddress(cfg), &a);
  if (!s.ok()) return Status::InvalidArgument(cfg.source + ": [server] listen: " + s.message());
  if (!a.unix_socket || !cfg.srv.tcp.empty()) {
    if (cfg.srv.token_file.empty()) return Status::InvalidArgument(cfg.source + ": [server] token_file is required to listen on TCP");
    std::string token;
    s = ReadTokenFile(cfg.srv.token_file, &token);
    if (!s.ok()) return Status::InvalidArgument(cfg.source + ": [server] token_file: " + s.message());
  }
  // The protocol has no TLS: decisions and the token would cross the network
  // in the clear. Loopback only; across hosts, a TLS tunnel (stunnel, ssh -L)
  // to a loopback listener.
  auto loopback_only = [&](const Address& t, const std::string& key) {
    if (t.unix_socket || IsLoopback(t.host)) return Status::OK();
    return Status::InvalidArgument(cfg.source + ": " + key + ": xatmd listens on TCP only on a loopback address "
                                   "(127.0.0.1 or ::1), not " + t.host + ": it speaks no TLS, so the token and the "
                                   "decisions would cross the network in the clear. Reach it from other hosts "
                                   "through a TLS tunnel (stunnel, ssh -L) that ends on the loopback address");
  };
  if (s = loopback_only(a, "[tm] server"); !s.ok()) return s;
  if (!cfg.srv.tcp.empty()) {
    s = ParseAddress("tcp:" + cfg.srv.tcp, &a);
    if (!s.ok()) return Status::InvalidArgument(cfg.source + ": [server] tcp: " + s.message());
    if (s = loopback_only(a, "[server] tcp"); !s.ok()) return s;
  }
  if (cfg.srv.metrics != "off") {
    s = ParseAddress("tcp:" + cfg.srv.metrics, &a);
    if (!s.ok()) return Status::InvalidArgument(cfg.source + ": [server] metrics: " + s.message());
  }
  struct stat st;
  if (file && (::stat(cfg.log_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
    return Status::InvalidArgument(cfg.source + ": [tm] log_dir " + cfg.log_dir + " is not a directory (create it first)");
  }
  return Status::OK();
}

Status Server::Start(const tm::TmConfig& cfg, std::unique_ptr<Server>* out) {
  out->reset();
  Status s = CheckServerConfig(cfg);
  if (!s.ok()) return s;
  auto impl = std::make_unique<ServerImpl>(cfg);
  s = impl->Init();
  if (!s.ok()) {
    impl->Stop();
    return s;
  }
  *out = std::move(impl);
  return Status::OK();
}

}  // namespace xtm::server
