// A PostgreSQL (or MySQL) wire-protocol proxy on loopback for message-loss
// tests: it forwards everything, except that a rule can cut the connection
// right before or right after a simple-query message (MySQL: COM_QUERY) whose
// SQL starts with a prefix is forwarded (the "lost message" and "lost reply"
// of the 2PC literature), and run a callback at that moment (e.g. restart the
// server).
//
// Connect through it with "host=127.0.0.1 port=<port()> sslmode=disable
// gssencmode=disable ..." (MySQL: host=127.0.0.1 port=<port()>).
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

namespace xtm::test {

class PgProxy {
 public:
  enum class Cut {
    kBeforeForward,  // the server never sees the statement
    kAfterReply,     // the server runs it; the client never sees the answer
  };
  enum class Protocol { kPostgres, kMysql };
  // Forwards 127.0.0.1:<port()> to 127.0.0.1:server_port.
  explicit PgProxy(int server_port, Protocol protocol = Protocol::kPostgres);
  ~PgProxy();
  int port() const { return port_; }

  // The next `times` statements starting with prefix are cut; on_cut runs
  // (on the proxy's thread) before the connection is closed.
  void CutOn(const std::string& prefix, Cut how, int times = 1, std::function<void()> on_cut = {});
  // While refusing, new connections are closed at once (the server looks down).
  void Refuse(bool refuse) { refuse_ = refuse; }
  int cuts() const { return cuts_; }

 private:
  struct Rule {
    std::string prefix;
    Cut how;
    int times;
    std::function<void()> on_cut;
  };
  void AcceptLoop();
  void Serve(int client);
  // The rule for sql, consuming one use; false if none.
  bool Match(const std::string& sql, Rule* out);

  int server_port_;
  Protocol protocol_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> refuse_{false};
  std::atomic<int> cuts_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<Rule> rules_;
  std::vector<std::thread> workers_;
};

}  // namespace xtm::test
