#include "support/pg_proxy.h"

#include "support/fork_child.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace xtm::test {
namespace {

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

uint32_t Be32(const char* p) {
  return (uint32_t(uint8_t(p[0])) << 24) | (uint32_t(uint8_t(p[1])) << 16) | (uint32_t(uint8_t(p[2])) << 8) |
         uint32_t(uint8_t(p[3]));
}

// Complete messages at the front of buf: (type, whole message bytes).
// The first client message (startup) has no type byte.
bool NextMessage(std::string& buf, bool untyped, char* type, std::string* msg) {
  const size_t hdr = untyped ? 4 : 5;
  if (buf.size() < hdr) return false;
  const uint32_t len = Be32(buf.data() + (untyped ? 0 : 1));
  const size_t total = (untyped ? 0 : 1) + len;
  if (buf.size() < total) return false;
  *type = untyped ? 0 : buf[0];
  msg->assign(buf, 0, total);
  buf.erase(0, total);
  return true;
}

// MySQL packets: a 3-byte little-endian length, a sequence number, the
// payload. A command starts a sequence (number 0); its first payload byte
// says which (0x03: COM_QUERY, the SQL follows). Other packets get type 0.
bool NextMysqlPacket(std::string& buf, bool from_client, char* type, std::string* msg) {
  if (buf.size() < 4) return false;
  const size_t len = size_t(uint8_t(buf[0])) | size_t(uint8_t(buf[1])) << 8 | size_t(uint8_t(buf[2])) << 16;
  if (buf.size() < 4 + len) return false;
  *type = from_client && buf[3] == 0 && len > 0 && buf[4] == 0x03 ? 'Q' : 0;
  msg->assign(buf, 0, 4 + len);
  buf.erase(0, 4 + len);
  return true;
}

}  // namespace

PgProxy::PgProxy(int server_port, Protocol protocol) : server_port_(server_port), protocol_(protocol) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::listen(listen_fd_, 64);
  socklen_t l = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &l);
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

PgProxy::~PgProxy() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> w;
  {
    std::lock_guard<std::mutex> l(mu_);
    w.swap(workers_);
  }
  for (auto& t : w) t.join();
}

void PgProxy::CutOn(const std::string& prefix, Cut how, int times, std::function<void()> on_cut) {
  std::lock_guard<std::mutex> l(mu_);
  rules_.push_back({prefix, how, times, std::move(on_cut)});
}

bool PgProxy::Match(const std::string& sql, Rule* out) {
  std::lock_guard<std::mutex> l(mu_);
  for (Rule& r : rules_) {
    if (r.times > 0 && sql.compare(0, r.prefix.size(), r.prefix) == 0) {
      --r.times;
      *out = r;
      return true;
    }
  }
  return false;
}

// The proxy's threads are gated (support/fork_child.h): they allocate only
// while holding ForkGate(), so a test may fork while they run.
void PgProxy::AcceptLoop() {
  GatedThread gated;
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    // Close-on-exec everywhere: a server restarted from a callback must not
    // inherit (and keep open) a socket the proxy closes.
    int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    if (refuse_) {
      ::close(c);
      continue;
    }
    std::shared_lock<std::shared_mutex> g(ForkGate());
    std::lock_guard<std::mutex> l(mu_);
    workers_.emplace_back([this, c] { Serve(c); });
  }
}

void PgProxy::Serve(int client) {
  GatedThread gated;
  // Released only while waiting in poll; destroyed last, after the buffers.
  std::shared_lock<std::shared_mutex> g(ForkGate());
  int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(server_port_));
  if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(server);
    ::close(client);
    return;
  }
  // Messages are forwarded one by one: no Nagle delay on either side.
  int one = 1;
  ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::string from_client, from_server;
  bool startup = true;
  // After a kAfterReply cut matched: swallow the server's answer up to its
  // ReadyForQuery, then close.
  bool swallowing = false;
  Rule pending;
  char buf[65536];
  while (!stop_) {
    pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    g.unlock();
    const int ready = ::poll(p, 2, 100);
    g.lock();
    if (ready <= 0) continue;
    if (p[0].revents) {
      ssize_t n = ::recv(client, buf, sizeof buf, 0);
      if (n <= 0) break;
      from_client.append(buf, static_cast<size_t>(n));
      char type;
      std::string msg;
      bool cut = false;
      const bool mysql = protocol_ == Protocol::kMysql;
      while (mysql ? NextMysqlPacket(from_client, true, &type, &msg) : NextMessage(from_client, startup, &type, &msg)) {
        startup = false;
        Rule r;
        // The SQL of a query: after the type and length (PostgreSQL: without
        // the final NUL), or after the header and the command byte (MySQL).
        if (type == 'Q' && Match(mysql ? msg.substr(5) : std::string(msg.data() + 5, msg.size() - 6), &r)) {
          ++cuts_;
          if (r.how == Cut::kBeforeForward) {
            if (r.on_cut) r.on_cut();
            cut = true;
            break;
          }
          pending = r;
          swallowing = true;
        }
        if (!WriteAll(server, msg.data(), msg.size())) {
          cut = true;
          break;
        }
      }
      if (cut) break;
    }
    if (p[1].revents) {
      ssize_t n = ::recv(server, buf, sizeof buf, 0);
      if (n <= 0) break;
      from_server.append(buf, static_cast<size_t>(n));
      char type;
      std::string msg;
      bool done = false;
      const bool mysql = protocol_ == Protocol::kMysql;
      while (mysql ? NextMysqlPacket(from_server, false, &type, &msg) : NextMessage(from_server, false, &type, &msg)) {
        if (swallowing) {
          // The statement has run (PostgreSQL: ReadyForQuery; MySQL: the
          // OK or error packet that answers it); its answer is lost.
          if (mysql || type == 'Z') {
            if (pending.on_cut) pending.on_cut();
            done = true;
            break;
          }
          continue;
        }
        if (!WriteAll(client, msg.data(), msg.size())) {
          done = true;
          break;
        }
      }
      if (done) break;
    }
  }
  ::close(server);
  ::close(client);
}

}  // namespace xtm::test
