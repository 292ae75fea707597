// ServerClient: libxatm's side of a connection to xatmd (protocol.h).
//
// One ServerClient is one session: xatmd gives it an incarnation under the
// server's node id, so the XIDs it makes are its own, and it answers for the
// session until the session ends (BYE) or is declared dead (the connection
// stayed closed, or no frame arrived, for the server's client_timeout_s).
//
// Requests of many threads share the connection; the waiting callers take
// turns reading it and match replies to requests by id. When the connection
// breaks, the reading caller reconnects and resumes the session, sending the
// unanswered requests again with their ids (the server answers each id once). If the session cannot be
// resumed, every call fails: with Fenced when the server declared the session
// dead (its transactions were resolved without it) or the session was gone
// before the request was sent, with UnknownOutcome for a decision in flight
// whose fate the caller cannot know now.
//
// Heartbeats are requests too: the server answers each, so a heartbeat that
// finds the connection closed resumes the session (or learns that it was
// declared dead) without waiting for the application's next request; Check()
// then tells the TM before its next commit point.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/protocol.h"
#include "util/status.h"

namespace xtm::server {

struct ClientOptions {
  Address address;               // the server in use (Connect sets it from servers)
  std::vector<Address> servers;  // every server, tried in order (empty: address alone)
  std::string token;        // required by a TCP listener
  std::string client_name;  // for the server's log
  bool admin = false;       // the admin tool: no session
  int reconnect_ms = 5000;  // how long to try to resume after a broken connection
  std::vector<ClientRm> rms;  // the RMs the session's transactions use (HELLO)
};

struct SessionInfo {
  std::string node_id;
  std::string node_name;
  uint32_t incarnation = 0;
  uint64_t key = 0;
  uint32_t heartbeat_ms = 1000;
};

// What a call's reply said.
struct Reply {
  ReplyCode code = ReplyCode::kOk;
  std::string message;
  std::string body;  // after the status
};

class ServerClient {
 public:
  static Status Connect(const ClientOptions& opts, std::unique_ptr<ServerClient>* out);
  ~ServerClient();

  const SessionInfo& session() const { return session_; }

  // Sends a request and waits for its reply. OK: the reply's status was kOk
  // and *body is what followed it. Otherwise the status says why: Fenced as
  // Busy with a message beginning "fenced:", the server's refusal as
  // InvalidArgument, the log's unknown outcome or a lost session as
  // UnknownOutcome.
  Status Call(Kind kind, std::string payload, std::string* body);
  // A request without a reply (END, PING). ENDs are held back and sent with
  // the next request or heartbeat.
  void Send(Kind kind, std::string payload);
  // OK while the session lasts; then why it ended (Fenced: declared dead, or
  // lost: the server no longer knows it).
  Status Check();
  // Counters sent with each heartbeat, for the server's metrics.
  void SetCounters(uint64_t begun, uint64_t committed, uint64_t rolled_back);
  // Ends the session cleanly (BYE) and stops the threads.
  void Close();

 private:
  explicit ServerClient(const ClientOptions& o) : opts_(o) {}
  struct Pending {
    uint8_t kind;
    std::string frame;
    bool done = false;
    Reply reply;
  };
  enum class State {
    kOpen,    // connected, or reconnecting
    kFenced,  // the server declared the session dead
    kLost,    // the session could not be resumed
    kClosed,  // Close() was called
  };

  // HELLO on fd (new or resumed session); the reply's status code.
  Status Hello(int fd, bool resume, ReplyCode* code, std::string* message);
  // REQUIRES: mu_ held. Hands a reply to its caller.
  void DispatchLocked(const Frame& f);
  void HeartbeatLoop();
  // REQUIRES: mu_ held. Fails every unanswered request.
  void FailPendingLocked(ReplyCode code, const std::string& message);
  // Reconnects and resumes; false when the session cannot be resumed.
  bool Resume();

  ClientOptions opts_;  // address: the server in use, changed by Resume (the reading thread)
  SessionInfo session_;

  std::mutex mu_;
  std::condition_variable cv_;
  int fd_ = -1;                          // REQUIRES mu_
  State state_ = State::kOpen;           // REQUIRES mu_
  std::string end_reason_;               // REQUIRES mu_: why the session ended
  uint64_t next_id_ = 0;                 // REQUIRES mu_
  std::map<uint64_t, Pending*> pending_;  // REQUIRES mu_
  bool reading_ = false;                 // REQUIRES mu_: a caller is reading the connection
  FrameReader reader_{-1, kMaxFrame};     // used by the reading caller
  int reader_fd_ = -1;                   // the fd reader_ reads (REQUIRES mu_)
  std::string held_;                     // REQUIRES mu_: END frames not sent yet
  uint64_t counters_[3] = {0, 0, 0};     // REQUIRES mu_
  std::thread heartbeat_;
};

}  // namespace xtm::server
