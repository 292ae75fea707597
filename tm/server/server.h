// xatmd: one decision log for many application processes.
//
// The server owns [tm] log_dir and answers the protocol of protocol.h on the
// address in [tm] server (and on [server] tcp, with a token). Each client
// process gets a session: an incarnation of the server's node id, durably
// allocated (a NODE record), so that its XIDs and its PostgreSQL sessions
// (application_name xatm/<node>/<incarnation>) are its own.
//
// Lifecycle of a session, and what the server does at each end:
//
//  1. Connected   HELLO gave it an incarnation; it sends decisions and
//                 heartbeats. Recovery leaves its transactions alone.
//  2. Disconnected  its connection closed; for client_timeout_s it may resume
//                 (HELLO with its incarnation and key), and a request sent
//                 again is answered from the reply cache, never run twice.
//  3. Dead        silent or disconnected longer than client_timeout_s: the
//                 server takes the exclusive fence lock (no decision of the
//                 session is being written), marks it dead, and runs recovery:
//                 its registered PostgreSQL backends are terminated, its
//                 decided transactions committed, its undecided prepared
//                 branches rolled back (unless a decision row may be
//                 committing: docs/architecture.md, Fencing). A late request
//                 from it is refused (kFenced); one it had made before is
//                 still answered from the cache. The client opens a new
//                 session for its next transaction.
//  4. Ended       BYE: a clean end; recovery finishes what it left decided.
//
// Recovery also runs every recovery_interval_s, so an in-doubt branch never
// waits for a person or a restart.
//
// Thread-safety: Start and Stop from one thread; the rest is internal.
#pragma once

#include <memory>
#include <string>

#include "core/config.h"
#include "util/status.h"

namespace xtm::server {

class Server {
 public:
  // Opens the TM (with recovery), listens, and starts serving.
  static Status Start(const tm::TmConfig& cfg, std::unique_ptr<Server>* out);
  virtual ~Server() = default;
  // Stops listening, ends every connection and closes the TM. Idempotent.
  virtual void Stop() = 0;
  // The bound ports (for port 0 in the configuration); 0 when not listening.
  virtual int tcp_port() const = 0;
  virtual int metrics_port() const = 0;
  // Non-empty once this server no longer holds its node in a postgresql
  // store (another xatmd claimed it): why. It serves nothing more; the
  // caller stops it.
  virtual std::string LostLead() const = 0;
};

// Checks a configuration as xatmd would use it, without starting anything.
Status CheckServerConfig(const tm::TmConfig& cfg);
// Where this xatmd listens: [server] listen, else [tm] server.
std::string ListenAddress(const tm::TmConfig& cfg);

}  // namespace xtm::server
