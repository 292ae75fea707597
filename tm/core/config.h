// The TM's configuration: an INI file (Boost.Program_options config-file
// syntax) or the same built in code.
//
// In a file, a relative path (log_dir, log_file, token_file, an RM's path) is
// relative to the directory of the file, not to the current directory.
//
//   [tm]
//   log_dir = /var/lib/xatm          (required) the decision log's directory
//   node_name = billing-1            (default: the host name) shown in logs and tools
//   timeout_s = 60                   a transaction open longer is rolled back
//   commit_retry_s = 30              how long phase two retries before leaving a branch to recovery
//   log_level = warn                 trace|debug|info|warn|error|off
//   log_file = /var/log/xatm.log     (default: stderr)
//   log_segment_kb = 4096            size of a decision-log segment
//   recover_on_open = true           false: leave recovery to `xatm recover` (or xatm_recover)
//   last_resource_commit = sqlite    commit one branch last, in one phase, with the decision
//                                    inside its own transaction instead of in the log: sqlite
//                                    (the default): the SQLite branch, if there is exactly one
//                                    and it wrote (its file already holds the RM's tables);
//                                    true: that, else the last-joined PostgreSQL branch (its
//                                    database gets the table xatm.decision, made at open);
//                                    false: never (every branch prepared, the decision logged)
//   background_phase_two = false     true: xatm_commit returns once the decision is durable and the
//                                    SQLite branches are committed; the others are committed by a
//                                    background thread (readers may see them a moment later);
//                                    with last_resource_commit, once the last resource committed
//   server = unix:/run/xatm/xatmd.sock   (optional) where xatmd listens; an application with this
//                                    key uses the server's decision log instead of log_dir. Several,
//                                    comma-separated: active/passive xatmd on a postgresql store;
//                                    clients use whichever leads
//   log_store = file                 file: the decision log in log_dir; postgresql: in the database
//                                    of log_conninfo (schema xatm), shared by nodes that each hold a
//                                    lease (node_name required, unique in the store)
//   log_conninfo = host=db1,db2 dbname=xatm target_session_attrs=read-write
//   lease_s = 10                     a node's lease in a postgresql store, renewed in the background
//   log_synchronous_commit = on      a postgresql store's decisions commit with at least this:
//                                    on, or remote_apply (applied on the synchronous standbys too)
//   takeover = false                 true: this node resolves the transactions of nodes whose lease
//                                    expired (postgresql store)
//
//   [server]                         (xatmd, and the token for clients of a tcp: server)
//   listen = unix:/run/xatm/a.sock   this xatmd's address, one of [tm] server when that lists
//                                    several (active/passive xatmd on a postgresql store)
//   tcp = 127.0.0.1:7420             also listen on this TCP address (token required)
//   token_file = /etc/xatm/token     the shared secret of TCP connections (mode 0600)
//   socket_mode = 0660               the unix socket's mode (0600 or 0660)
//   client_timeout_s = 5             a client silent (or disconnected) this long is declared dead
//   recovery_interval_s = 5          how often the server resolves in-doubt branches by itself
//   metrics = 127.0.0.1:9464         Prometheus text on GET /metrics (off: none)
//   admin_uids = 1000, ops           who may run admin commands through the server over its
//                                    unix socket (uids or user names; root and the server's own
//                                    user always may; over TCP the token is the right)
//
//   [rm.bank]
//   type = postgresql
//   conninfo = host=/run/postgresql dbname=bank
//
//   [rm.ledger]
//   type = sqlite
//   path = /var/lib/app/ledger.db
//   busy_timeout_ms = 5000
#pragma once

#include <string>
#include <vector>

#include "common/rm_extras.h"
#include "util/status.h"
#include "xatm/xa.h"

namespace xtm::tm {

struct RmSpec {
  enum class Type { kPostgres, kSqlite, kSwitch, kMysql };
  std::string name;
  Type type = Type::kPostgres;
  std::string conninfo;  // kPostgres: a libpq conninfo; kMysql: the RM's key=value pairs
  std::string path;      // kSqlite
  int busy_timeout_ms = -1;
  xa_switch_t* sw = nullptr;  // kSwitch
  std::string xa_info;        // kSwitch
};

struct TmConfig {
  std::string source = "(configuration built in code)";
  std::string log_dir;
  std::string node_name;
  int timeout_s = 60;
  int commit_retry_s = 30;
  std::string log_level = "warn";
  std::string log_file;
  int log_segment_kb = 4096;
  bool recover_on_open = true;
  // Which branch may commit last in one phase holding the decision.
  enum class LastResource { kNone, kSqlite, kAny };
  LastResource last_resource_commit = LastResource::kSqlite;
  bool background_phase_two = false;
  std::string server;  // [tm] server: empty for the embedded TM
  // Where the decisions are kept: the log in log_dir, or a PostgreSQL
  // database (log_conninfo) shared by nodes, each with a lease.
  enum class LogStore { kFile, kPostgres };
  LogStore log_store = LogStore::kFile;
  std::string log_conninfo;
  int lease_s = 10;
  std::string log_synchronous_commit = "on";  // on | remote_apply
  bool takeover = false;
  struct Server {
    std::string listen;  // this xatmd's address, when [tm] server lists several
    std::string tcp;
    std::string token_file;
    unsigned socket_mode = 0660;
    int client_timeout_s = 5;
    int recovery_interval_s = 5;
    std::string metrics = "127.0.0.1:9464";
    std::vector<unsigned> admin_uids;  // besides root and the server's own user
  } srv;
  std::vector<RmSpec> rms;
};

// Reads an INI file. Errors name the file, the line and the key.
Status LoadConfig(const std::string& path, TmConfig* out);
// Sets one [tm] key.
Status SetTmKey(TmConfig* cfg, const std::string& key, const std::string& value);
// Sets one [server] key.
Status SetServerKey(TmConfig* cfg, const std::string& key, const std::string& value);
// Adds an RM; refuses a duplicate or malformed name.
Status AddRm(TmConfig* cfg, RmSpec rm);
// Checks what LoadConfig and the setters cannot check one key at a time.
Status ValidateConfig(const TmConfig& cfg);

const char* RmTypeName(RmSpec::Type t);

// Every key of the file, one line each with its meaning (for --help of xatm
// and xatmd; docs/operations.md and this header say more).
const char* ConfigKeysHelp();
// What the RM's extras (resource_managers/common/rm_extras.h) get of spec.
rm::RmParams RmParamsOf(const RmSpec& spec, int rmid = 0, bool read_only = false);

}  // namespace xtm::tm
