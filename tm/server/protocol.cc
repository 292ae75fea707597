#include "server/protocol.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "util/coding.h"
#include "util/file_util.h"

namespace xtm::server {

std::string EncodeFrame(uint8_t kind, uint64_t id, std::string_view payload) {
  std::string f;
  f.reserve(13 + payload.size());
  PutFixed32(&f, static_cast<uint32_t>(9 + payload.size()));
  f.push_back(static_cast<char>(kind));
  PutFixed64(&f, id);
  f.append(payload.data(), payload.size());
  return f;
}

namespace {

Status ReadFull(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::FromErrno("read from the xatmd connection", errno);
    if (r == 0) return Status::IOError("the connection was closed");
    p += r;
    n -= static_cast<size_t>(r);
  }
  return Status::OK();
}

}  // namespace

Status ReadFrame(int fd, uint32_t max_len, Frame* out) {
  char head[4];
  Status s = ReadFull(fd, head, 4);
  if (!s.ok()) return s;
  const uint32_t len = DecodeFixed32(head);
  if (len < 9 || len > max_len) {
    return Status::Corruption("frame of " + std::to_string(len) + " bytes (allowed: 9 to " + std::to_string(max_len) +
                              ")");
  }
  std::string body(len, '\0');
  s = ReadFull(fd, body.data(), len);
  if (!s.ok()) return s;
  out->kind = static_cast<uint8_t>(body[0]);
  out->id = DecodeFixed64(body.data() + 1);
  out->payload.assign(body, 9);
  return Status::OK();
}

Status FrameReader::Next(Frame* out) {
  for (;;) {
    const size_t have = buf_.size() - pos_;
    if (have >= 4) {
      const uint32_t len = DecodeFixed32(buf_.data() + pos_);
      if (len < 9 || len > max_len_) {
        return Status::Corruption("frame of " + std::to_string(len) + " bytes (allowed: 9 to " +
                                  std::to_string(max_len_) + ")");
      }
      if (have >= 4 + static_cast<size_t>(len)) {
        const char* p = buf_.data() + pos_ + 4;
        out->kind = static_cast<uint8_t>(p[0]);
        out->id = DecodeFixed64(p + 1);
        out->payload.assign(p + 9, len - 9);
        pos_ += 4 + len;
        if (pos_ == buf_.size()) {
          buf_.clear();
          pos_ = 0;
        }
        return Status::OK();
      }
    }
    if (pos_ > 0) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    const size_t old = buf_.size();
    buf_.resize(old + 64 * 1024);
    ssize_t r;
    do {
      r = ::recv(fd_, buf_.data() + old, buf_.size() - old, 0);
    } while (r < 0 && errno == EINTR);
    const int e = errno;
    buf_.resize(old + (r > 0 ? static_cast<size_t>(r) : 0));
    if (r < 0) return Status::FromErrno("read from the xatmd connection", e);
    if (r == 0) return Status::IOError("the connection was closed");
  }
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t w = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Status::FromErrno("write to the xatmd connection", errno);
    data.remove_prefix(static_cast<size_t>(w));
  }
  return Status::OK();
}

std::string EncodeStatus(ReplyCode code, std::string_view message) {
  std::string s;
  s.push_back(static_cast<char>(code));
  PutBytes(&s, message);
  return s;
}

Status ParseAddress(const std::string& text, Address* out) {
  *out = Address();
  out->text = text;
  if (text.rfind("unix:", 0) == 0) {
    out->path = text.substr(5);
    if (out->path.empty() || out->path[0] != '/') {
      return Status::InvalidArgument("server address \"" + text + "\": a unix socket needs an absolute path (unix:/run/xatm/xatmd.sock)");
    }
    if (out->path.size() >= sizeof(sockaddr_un::sun_path)) {
      return Status::InvalidArgument("server address \"" + text + "\": the socket path is longer than " +
                                     std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
    }
    return Status::OK();
  }
  if (text.rfind("tcp:", 0) == 0) {
    out->unix_socket = false;
    const std::string hp = text.substr(4);
    const size_t colon = hp.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return Status::InvalidArgument("server address \"" + text + "\": expected tcp:HOST:PORT (tcp:127.0.0.1:7420)");
    }
    out->host = hp.substr(0, colon);
    try {
      size_t n = 0;
      out->port = std::stoi(hp.substr(colon + 1), &n);
      if (n != hp.size() - colon - 1 || out->port < 0 || out->port > 65535) throw std::out_of_range("port");
    } catch (...) {
      return Status::InvalidArgument("server address \"" + text + "\": the port must be a number from 0 to 65535");
    }
    return Status::OK();
  }
  return Status::InvalidArgument("server address \"" + text +
                                 "\": must begin with unix: or tcp: (unix:/run/xatm/xatmd.sock, tcp:127.0.0.1:7420)");
}

void SetReadTimeout(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

Status ParseAddressList(const std::string& text, std::vector<Address>* out) {
  out->clear();
  size_t at = 0;
  for (;;) {
    size_t comma = text.find(',', at);
    std::string one = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    while (!one.empty() && one.front() == ' ') one.erase(0, 1);
    while (!one.empty() && one.back() == ' ') one.pop_back();
    Address a;
    if (Status s = ParseAddress(one, &a); !s.ok()) return s;
    out->push_back(std::move(a));
    if (comma == std::string::npos) return Status::OK();
    at = comma + 1;
  }
}

namespace {

// The socket address of a, and a socket (close-on-exec) of its family.
Status OpenSocket(const Address& a, sockaddr_storage* ss, socklen_t* len, int* fd) {
  *ss = sockaddr_storage{};
  if (a.unix_socket) {
    auto* sa = reinterpret_cast<sockaddr_un*>(ss);
    sa->sun_family = AF_UNIX;
    std::strncpy(sa->sun_path, a.path.c_str(), sizeof sa->sun_path - 1);
    *len = sizeof(sockaddr_un);
  } else {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(a.port);
    const int rc = ::getaddrinfo(a.host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || res == nullptr) return Status::IOError("cannot resolve " + a.host + ": " + ::gai_strerror(rc));
    std::memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    ::freeaddrinfo(res);
  }
  *fd = ::socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (*fd < 0) return Status::FromErrno("socket", errno);
  return Status::OK();
}

// Closes fd and returns the error of what failed on it.
Status CloseFailed(int fd, const std::string& what) {
  const int e = errno;
  ::close(fd);
  return Status::FromErrno(what, e);
}

}  // namespace

bool IsLoopback(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) return false;
  bool all = true;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      all = all && (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (a->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
      all = all && IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    } else {
      all = false;
    }
  }
  ::freeaddrinfo(res);
  return all;
}

Status Connect(const Address& a, int* fd_out) {
  *fd_out = -1;
  sockaddr_storage ss;
  socklen_t len = 0;
  int fd = -1;
  Status s = OpenSocket(a, &ss, &len, &fd);
  if (!s.ok()) return s;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return CloseFailed(fd, "cannot connect to xatmd at " + a.text);
  }
  if (!a.unix_socket) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  *fd_out = fd;
  return Status::OK();
}

Status Listen(const Address& a, unsigned mode, int* fd_out) {
  *fd_out = -1;
  if (a.unix_socket) {
    // A socket file nobody answers on is what a killed server leaves.
    struct stat st;
    if (::lstat(a.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return Status::InvalidArgument(a.path + " exists and is not a socket: refusing to replace it");
      }
      int probe = -1;
      if (Connect(a, &probe).ok()) {
        ::close(probe);
        return Status::Busy("another xatmd is already listening on " + a.text);
      }
      ::unlink(a.path.c_str());
    }
  }
  sockaddr_storage ss;
  socklen_t len = 0;
  int fd = -1;
  Status s = OpenSocket(a, &ss, &len, &fd);
  if (!s.ok()) return s;
  if (a.unix_socket) {
    // Created with no access for anyone, then opened to the configured mode:
    // no moment where a wider mode lets someone in.
    const mode_t old = ::umask(0777);
    const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len);
    const int e = errno;
    ::umask(old);
    errno = e;
    if (rc != 0) return CloseFailed(fd, "cannot bind " + a.text);
    if (::chmod(a.path.c_str(), mode) != 0) return CloseFailed(fd, "cannot set the mode of " + a.text);
  } else {
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return CloseFailed(fd, "cannot bind " + a.text);
  }
  if (::listen(fd, 128) != 0) return CloseFailed(fd, "cannot listen on " + a.text);
  *fd_out = fd;
  return Status::OK();
}

int BoundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

Status ReadTokenFile(const std::string& path, std::string* token) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("token file " + path, errno);
  if ((st.st_mode & 077) != 0) {
    return Status::InvalidArgument("token file " + path + " can be read by others (mode " +
                                   std::to_string((st.st_mode >> 6) & 7) + std::to_string((st.st_mode >> 3) & 7) +
                                   std::to_string(st.st_mode & 7) + "): chmod 600 it");
  }
  std::string text;
  Status s = file::ReadAll(path, &text);
  if (!s.ok()) return s;
  text = text.substr(0, text.find('\n'));
  while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.pop_back();
  if (text.size() < 16) return Status::InvalidArgument("token file " + path + ": the token must be at least 16 characters");
  *token = text;
  return Status::OK();
}

bool SameSecret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace xtm::server
