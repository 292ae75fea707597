// The wire protocol between libxatm (in an application process) or the xatm
// tool and xatmd.
//
// A connection carries frames in both directions:
//
//   frame   := length:u32le kind:u8 request_id:u64le payload
//   length  := 1 + 8 + len(payload), at most kMaxFrame
//
// The first frame a client sends is HELLO; the server answers it and closes
// the connection on anything else. Every request carries an id chosen by the
// client, increasing within a session; a reply has the request's kind with
// kReplyBit set and the same id. A client that loses its connection
// reconnects with HELLO(resume) and sends its unanswered requests again with
// their ids: the server answers each id once (a request it has already
// answered gets the same reply again, never a second execution).
//
// Payloads use the log's encodings (util/coding.h: u32/u64 little-endian,
// byte strings as u32 length + bytes); COMMIT, HEURISTIC and FORGET carry the
// decision log's own record payloads (log/records.h).
//
//   HELLO      version:u32 flags:u32 token:bytes client:bytes pid:u32
//              resume_incarnation:u32 resume_key:u64
//              n:u32 (rm:bytes type:u8 identity:bytes)*n     the client's RMs
//   reply      status node_id:bytes node_name:bytes incarnation:u32
//              session_key:u64 heartbeat_ms:u32
//   COMMIT     CommitRecord payload           reply: status  (durable on kOk)
//   END        EndRecord payload              no reply (not forced)
//   HEURISTIC  HeuristicRecord payload        reply: status
//   FORGET     ForgetRecord payload           reply: status
//   STATE      (empty)                        reply: status n:u32 (type:u8 payload:bytes)*n
//   RECOVER    dry_run:u32                    reply: status committed:u32 rolled_back:u32
//                                                    ended:u32 left:u32 n:u32 line:bytes*n
//   ADMIN      n:u32 arg:bytes*n              reply: status exit:u32 out:bytes err:bytes
//   PING       begun:u64 committed:u64 rolled_back:u64   reply: status (kFenced once the
//                                             session is dead: the client learns it at once)
//   BYE        begun:u64 committed:u64 rolled_back:u64   no reply; the session ends cleanly
//   ALIVE      gtrid:bytes                    reply: status: kOk while the session is live and
//                                             nobody decided gtrid by hand; kFenced when dead
//   BACKEND    rm:bytes pid:u32 start:bytes   reply: status; a PostgreSQL backend the session
//                                             uses for branches, ended by the takeover
//
//   status     := code:u8 message:bytes       (ReplyCode)
//
// A HELLO that opens a session names the client's RMs: the server refuses a
// client whose RMs it does not have (it could not read a decision row there,
// and would presume abort), or whose SQLite database is another file than
// its own (identity: the database's id; empty when not known yet).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace xtm::server {

inline constexpr uint32_t kProtocolVersion = 2;
inline constexpr uint32_t kMaxFrame = 16u << 20;      // what a client accepts
inline constexpr uint32_t kMaxRequestFrame = 1u << 20;  // what the server accepts

enum class Kind : uint8_t {
  kHello = 1,
  kCommit = 2,
  kEnd = 3,
  kHeuristic = 4,
  kForget = 5,
  kState = 6,
  kRecover = 7,
  kAdmin = 8,
  kPing = 9,
  kBye = 10,
  kAlive = 11,
  kBackend = 12,
  kOutcome = 13,  // the outcome of an ended session's transaction whose branch the client holds
};
inline constexpr uint8_t kLastKind = static_cast<uint8_t>(Kind::kOutcome);
inline constexpr uint8_t kReplyBit = 0x80;

// HELLO flags.
inline constexpr uint32_t kHelloAdmin = 1;  // an admin tool: no session, no XIDs

// An RM a client uses, as its HELLO names it.
struct ClientRm {
  std::string name;
  uint8_t type = 0;      // tm::RmSpec::Type
  std::string identity;  // SQLite: the database's id (xatm_meta db_id); else empty
};

enum class ReplyCode : uint8_t {
  kOk = 0,
  kError = 1,    // refused or failed; nothing was done (the message says why)
  kFenced = 2,   // the session was declared dead and its transactions resolved by the server
  kUnknown = 3,  // the decision log failed in a way that may or may not have recorded it
  kDenied = 4,   // HELLO refused: bad token, unsupported version
};

struct Frame {
  uint8_t kind = 0;
  uint64_t id = 0;
  std::string payload;
};

std::string EncodeFrame(uint8_t kind, uint64_t id, std::string_view payload);
// Reads one frame. IOError on a closed or failed connection, Corruption for a
// length outside 9..max_len (the connection must then be dropped).
Status ReadFrame(int fd, uint32_t max_len, Frame* out);
// Reads frames through a buffer: one recv usually brings several frames (an
// END and the COMMIT after it), and Buffered() tells whether another one is
// already here.
class FrameReader {
 public:
  FrameReader(int fd, uint32_t max_len) : fd_(fd), max_len_(max_len) {}
  void Reset(int fd) {
    fd_ = fd;
    buf_.clear();
    pos_ = 0;
  }
  // As ReadFrame.
  Status Next(Frame* out);
  bool Buffered() const { return buf_.size() > pos_; }

 private:
  int fd_;
  uint32_t max_len_;
  std::string buf_;
  size_t pos_ = 0;
};

// Writes all of data; never raises SIGPIPE.
Status WriteAll(int fd, std::string_view data);

std::string EncodeStatus(ReplyCode code, std::string_view message);

// An address from the configuration: "unix:/path" or "tcp:host:port".
struct Address {
  bool unix_socket = true;
  std::string path;  // unix
  std::string host;  // tcp
  int port = 0;
  std::string text;  // as configured
};
Status ParseAddress(const std::string& text, Address* out);
// Several, separated by commas (the servers a client may use, in order).
Status ParseAddressList(const std::string& text, std::vector<Address>* out);
// A connected socket (close-on-exec).
Status Connect(const Address& a, int* fd);
// Reads from fd fail (EAGAIN) after ms of silence; 0: wait for ever.
void SetReadTimeout(int fd, int ms);
// Whether a TCP host is a loopback address (127.0.0.0/8, ::1, localhost).
bool IsLoopback(const std::string& host);
// A listening socket. For a unix socket, a stale socket file left by a dead
// server is replaced; a live one is refused. mode: the socket file's mode.
Status Listen(const Address& a, unsigned mode, int* fd);
// The port a listening TCP socket got (for port 0).
int BoundPort(int fd);

// The shared secret of TCP connections: the file's first line, refused unless
// only its owner can read it.
Status ReadTokenFile(const std::string& path, std::string* token);
// Constant-time comparison.
bool SameSecret(std::string_view a, std::string_view b);

}  // namespace xtm::server
