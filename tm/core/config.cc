#include "core/config.h"

#include <pwd.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace po = boost::program_options;

namespace xtm::tm {
namespace {

Status Bad(const std::string& where, const std::string& what) {
  return Status::InvalidArgument(where + ": " + what);
}

bool ParseInt(const std::string& v, int lo, int hi, int* out) {
  try {
    size_t n = 0;
    long x = std::stol(v, &n);
    if (n != v.size() || x < lo || x > hi) return false;
    *out = static_cast<int>(x);
    return true;
  } catch (...) {
    return false;
  }
}

bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > 63) return false;
  for (char c : n) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  }
  return true;
}

// A path from the file at config_path: a relative one is relative to the
// file's directory, never to the current directory of whoever reads it (an
// admin tool run elsewhere must find the same databases and log).
std::string FromConfigDir(const std::string& config_path, const std::string& value) {
  if (value.empty() || value[0] == '/') return value;
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::absolute(config_path, ec).parent_path();
  if (ec) return value;
  return (dir / value).lexically_normal().string();
}

std::string Trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

}  // namespace

const char* RmTypeName(RmSpec::Type t) {
  switch (t) {
    case RmSpec::Type::kPostgres: return "postgresql";
    case RmSpec::Type::kSqlite: return "sqlite";
    case RmSpec::Type::kSwitch: return "xa_switch";
    case RmSpec::Type::kMysql: return "mysql";
  }
  return "?";
}

namespace {

const std::set<std::string> kMysqlKeys = {"host", "port", "socket", "user", "password", "database", "durability"};

// A value inside the MySQL RM's single quotes: quotes and backslashes escaped.
std::string QuoteForMysqlInfo(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

const char* ConfigKeysHelp() {
  return R"(configuration file (INI; relative paths are relative to the file's directory):
  [tm]
    log_dir                 the decision log's directory (required with the file store; must exist)
    node_name               this node's name (default: the host name); unique in a postgresql store
    timeout_s               a transaction open longer is rolled back, its locks released (60)
    commit_retry_s          how long phase two retries before leaving a branch to recovery (30)
    log_level               trace|debug|info|warn|error|off (warn; info: one line per decision)
    log_file                where the TM logs (default: stderr)
    log_segment_kb          size of a decision-log segment (4096)
    recover_on_open         false: leave recovery to `xatm recover` (true)
    last_resource_commit    sqlite|true|false: which branch commits last holding the decision (sqlite)
    background_phase_two    true: commit returns once decided; phase two on the TM's threads (false)
    server                  xatmd's address(es): use its decisions (unix:/path, tcp:host:port; A,B)
    log_store               file|postgresql: where the decisions are kept (file)
    log_conninfo            the postgresql store's libpq conninfo
    lease_s                 a node's lease in the postgresql store (10)
    log_synchronous_commit  on|remote_apply: the store's decisions commit at least so (on)
    takeover                true: take over nodes whose lease expired (false)
  [server]  (xatmd; token_file for clients of a tcp: server too)
    listen                  this xatmd's address among [tm] server = A,B
    tcp                     also listen on this TCP address (needs token_file)
    token_file              the shared secret of TCP connections (mode 0600)
    socket_mode             the unix socket's mode, 0600 or 0660 (0660)
    client_timeout_s        a client silent this long is declared dead (5)
    recovery_interval_s     how often the server resolves in-doubt branches (5)
    metrics                 Prometheus text on GET /metrics at this address, or off (127.0.0.1:9464)
    admin_uids              uids or user names that may run admin commands over the socket
  [rm.NAME]
    type                    postgresql | sqlite | mysql
    conninfo                postgresql: the libpq conninfo (needs max_prepared_transactions > 0)
    path                    sqlite: the database file (must exist)
    busy_timeout_ms         sqlite: how long to wait for the write lock (5000)
    host, port, socket      mysql: where the server is
    user, password          mysql: who connects
    database                mysql: the database
    durability              mysql: require (default) | warn: accept a server that could lose a commit
More: docs/operations.md and docs/architecture.md ("Configuration").
)";
}

rm::RmParams RmParamsOf(const RmSpec& spec, int rmid, bool read_only) {
  return {.name = spec.name,
          .rmid = rmid,
          .conninfo = spec.conninfo,
          .path = spec.path,
          .busy_timeout_ms = spec.busy_timeout_ms,
          .read_only = read_only,
          .xa_info = spec.xa_info};
}

Status SetTmKey(TmConfig* cfg, const std::string& key, const std::string& value) {
  const std::string where = cfg->source + ": [tm] " + key;
  if (key == "log_dir") {
    cfg->log_dir = value;
  } else if (key == "node_name") {
    if (!value.empty() && !ValidName(value)) return Bad(where, "use letters, digits, '_' and '-' (at most 63)");
    cfg->node_name = value;
  } else if (key == "timeout_s") {
    if (!ParseInt(value, 1, 86400, &cfg->timeout_s)) return Bad(where, "must be seconds from 1 to 86400, not \"" + value + "\"");
  } else if (key == "commit_retry_s") {
    if (!ParseInt(value, 0, 86400, &cfg->commit_retry_s)) return Bad(where, "must be seconds from 0 to 86400, not \"" + value + "\"");
  } else if (key == "log_level") {
    static const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "off"};
    bool ok = false;
    for (const char* l : kLevels) ok = ok || value == l;
    if (!ok) return Bad(where, "must be one of trace, debug, info, warn, error, off");
    cfg->log_level = value;
  } else if (key == "log_file") {
    cfg->log_file = value;
  } else if (key == "last_resource_commit") {
    if (value == "false") {
      cfg->last_resource_commit = TmConfig::LastResource::kNone;
    } else if (value == "sqlite") {
      cfg->last_resource_commit = TmConfig::LastResource::kSqlite;
    } else if (value == "true") {
      cfg->last_resource_commit = TmConfig::LastResource::kAny;
    } else {
      return Bad(where, "must be sqlite (a SQLite branch commits last), true (a PostgreSQL one too) or false "
                        "(none), not \"" + value + "\"");
    }
  } else if (key == "background_phase_two") {
    if (value != "true" && value != "false") return Bad(where, "must be true or false");
    cfg->background_phase_two = value == "true";
  } else if (key == "recover_on_open") {
    if (value != "true" && value != "false") return Bad(where, "must be true or false");
    cfg->recover_on_open = value == "true";
  } else if (key == "log_store") {
    if (value == "file") {
      cfg->log_store = TmConfig::LogStore::kFile;
    } else if (value == "postgresql") {
      cfg->log_store = TmConfig::LogStore::kPostgres;
    } else {
      return Bad(where, "must be file (the log in log_dir) or postgresql (the database of log_conninfo), not \"" +
                            value + "\"");
    }
  } else if (key == "log_conninfo") {
    cfg->log_conninfo = value;
  } else if (key == "log_synchronous_commit") {
    if (value != "on" && value != "remote_apply") {
      return Bad(where, "must be on or remote_apply, not \"" + value + "\" (a decision is never acknowledged "
                        "before its WAL is flushed)");
    }
    cfg->log_synchronous_commit = value;
  } else if (key == "lease_s") {
    if (!ParseInt(value, 1, 3600, &cfg->lease_s)) return Bad(where, "must be seconds from 1 to 3600, not \"" + value + "\"");
  } else if (key == "takeover") {
    if (value != "true" && value != "false") return Bad(where, "must be true or false");
    cfg->takeover = value == "true";
  } else if (key == "server") {
    if (!value.empty() && value.rfind("unix:/", 0) != 0 && value.rfind("tcp:", 0) != 0) {
      return Bad(where, "must be unix:/PATH or tcp:HOST:PORT, not \"" + value + "\"");
    }
    cfg->server = value;
  } else if (key == "log_segment_kb") {
    if (!ParseInt(value, 16, 1 << 20, &cfg->log_segment_kb)) {
      return Bad(where, "must be kilobytes from 16 to 1048576, not \"" + value + "\"");
    }
  } else {
    return Bad(cfg->source + ": [tm]", "unknown key \"" + key +
                                           "\" (known: log_dir, node_name, timeout_s, commit_retry_s, "
                                           "log_level, log_file, log_segment_kb, recover_on_open, "
                                           "last_resource_commit, background_phase_two, server, log_store, "
                                           "log_conninfo, lease_s, takeover, log_synchronous_commit)");
  }
  return Status::OK();
}

Status SetServerKey(TmConfig* cfg, const std::string& key, const std::string& value) {
  const std::string where = cfg->source + ": [server] " + key;
  TmConfig::Server& v = cfg->srv;
  if (key == "tcp") {
    v.tcp = value;
  } else if (key == "listen") {
    if (value.rfind("unix:/", 0) != 0 && value.rfind("tcp:", 0) != 0) {
      return Bad(where, "must be unix:/PATH or tcp:HOST:PORT, not \"" + value + "\"");
    }
    v.listen = value;
  } else if (key == "token_file") {
    v.token_file = value;
  } else if (key == "socket_mode") {
    if (value != "0600" && value != "0660" && value != "600" && value != "660") {
      return Bad(where, "must be 0600 or 0660 (the socket is never open to others)");
    }
    v.socket_mode = value.back() == '0' && value[value.size() - 2] == '6' ? 0660 : 0600;
  } else if (key == "client_timeout_s") {
    if (!ParseInt(value, 1, 3600, &v.client_timeout_s)) return Bad(where, "must be seconds from 1 to 3600, not \"" + value + "\"");
  } else if (key == "recovery_interval_s") {
    if (!ParseInt(value, 1, 3600, &v.recovery_interval_s)) return Bad(where, "must be seconds from 1 to 3600, not \"" + value + "\"");
  } else if (key == "metrics") {
    if (value != "off" && value.rfind(':') == std::string::npos) return Bad(where, "must be HOST:PORT or off");
    v.metrics = value;
  } else if (key == "admin_uids") {
    v.admin_uids.clear();
    std::string item;
    std::istringstream in(value);
    while (std::getline(in, item, ',')) {
      item = Trim(item);
      if (item.empty()) continue;
      int uid = -1;
      if (ParseInt(item, 0, 2147483647, &uid)) {
        v.admin_uids.push_back(static_cast<unsigned>(uid));
      } else if (const struct passwd* pw = ::getpwnam(item.c_str())) {
        v.admin_uids.push_back(pw->pw_uid);
      } else {
        return Bad(where, "\"" + item + "\" is neither a uid nor a user name of this host");
      }
    }
  } else {
    return Bad(cfg->source + ": [server]", "unknown key \"" + key +
                                               "\" (known: listen, tcp, token_file, socket_mode, client_timeout_s, "
                                               "recovery_interval_s, metrics, admin_uids)");
  }
  return Status::OK();
}

Status AddRm(TmConfig* cfg, RmSpec rm) {
  if (!ValidName(rm.name)) {
    return Bad(cfg->source, "resource manager name \"" + rm.name +
                                "\": use letters, digits, '_' and '-' (at most 63)");
  }
  for (const RmSpec& r : cfg->rms) {
    if (r.name == rm.name) return Bad(cfg->source, "resource manager \"" + rm.name + "\" is defined twice");
  }
  if (rm.type == RmSpec::Type::kSwitch && rm.sw == nullptr) {
    return Bad(cfg->source, "resource manager \"" + rm.name + "\": the xa_switch_t is NULL");
  }
  cfg->rms.push_back(std::move(rm));
  return Status::OK();
}

Status ValidateConfig(const TmConfig& cfg) {
  if (cfg.log_store == TmConfig::LogStore::kPostgres) {
    if (cfg.log_conninfo.empty()) {
      return Bad(cfg.source, "[tm] log_store = postgresql needs log_conninfo: the database that keeps the decisions");
    }
    if (cfg.node_name.empty()) {
      return Bad(cfg.source, "[tm] log_store = postgresql needs node_name: this node's name, unique among the "
                             "nodes of the store (its lease and its decisions are kept under it)");
    }
    // With [tm] server too, the file serves both sides: xatmd keeps its
    // decisions in the store, its clients keep none themselves.
  } else if (cfg.takeover) {
    return Bad(cfg.source, "[tm] takeover = true needs log_store = postgresql: only a shared store has other nodes "
                           "to take over");
  }
  if (cfg.log_store == TmConfig::LogStore::kPostgres) {
  } else if (cfg.log_dir.empty() && cfg.server.empty()) {
    return Bad(cfg.source, "[tm] log_dir is required: the directory of the decision log (or [tm] server)");
  }
  for (const RmSpec& r : cfg.rms) {
    const std::string where = cfg.source + ": [rm." + r.name + "]";
    if (r.type == RmSpec::Type::kPostgres && r.conninfo.empty()) return Bad(where, "conninfo is required for type = postgresql");
    if (r.type == RmSpec::Type::kSqlite && r.path.empty()) return Bad(where, "path is required for type = sqlite");
  }
  return Status::OK();
}

Status LoadConfig(const std::string& path, TmConfig* out) {
  *out = TmConfig();
  out->source = path;
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument("cannot read the configuration file " + path);
  std::stringstream text;
  text << in.rdbuf();

  // A first pass for what Boost does not report: where each key and section
  // is (for messages) and sections given twice.
  std::map<std::string, int> key_line;
  std::map<std::string, int> section_line;
  {
    std::istringstream lines(text.str());
    std::string line, section;
    for (int n = 1; std::getline(lines, line); ++n) {
      // As Boost's parser does: everything from '#' on is a comment.
      std::string t = Trim(line.substr(0, line.find('#')));
      if (t.empty() || t[0] == '#' || t[0] == ';') continue;
      if (t.front() == '[') {
        if (t.back() != ']') return Bad(path + ":" + std::to_string(n), "malformed section header \"" + t + "\"");
        section = Trim(t.substr(1, t.size() - 2));
        auto [it, fresh] = section_line.emplace(section, n);
        if (!fresh) {
          return Bad(path + ":" + std::to_string(n), "section [" + section + "] appears twice (first at line " +
                                                         std::to_string(it->second) + ")");
        }
        if (section != "tm" && section != "server" && section.rfind("rm.", 0) != 0) {
          return Bad(path + ":" + std::to_string(n), "unknown section [" + section + "] (known: [tm], [server], [rm.NAME])");
        }
        continue;
      }
      size_t eq = t.find('=');
      if (eq == std::string::npos) return Bad(path + ":" + std::to_string(n), "expected key = value, got \"" + t + "\"");
      if (section.empty()) return Bad(path + ":" + std::to_string(n), "key outside any section: put it under [tm] or [rm.NAME]");
      std::string key = section + "." + Trim(t.substr(0, eq));
      if (!key_line.emplace(key, n).second) {
        return Bad(path + ":" + std::to_string(n), "key " + Trim(t.substr(0, eq)) + " is given twice in [" + section + "]");
      }
    }
  }
  if (!section_line.count("tm")) return Bad(path, "the [tm] section is missing (it needs at least log_dir)");

  // Boost reads '#' comments itself; ';' comment lines (INI's other habit)
  // are blanked for it.
  std::string cleaned;
  {
    std::istringstream lines(text.str());
    std::string line;
    while (std::getline(lines, line)) {
      const std::string t = Trim(line);
      cleaned += (!t.empty() && t[0] == ';' ? "" : line) + "\n";
    }
  }
  po::parsed_options parsed(nullptr);
  try {
    std::istringstream s(cleaned);
    po::options_description none;
    parsed = po::parse_config_file(s, none, /*allow_unregistered=*/true);
  } catch (const std::exception& e) {
    return Bad(path, e.what());
  }
  std::map<std::string, std::map<std::string, std::string>> rm_keys;  // name -> key -> value
  std::vector<std::string> rm_order;
  for (const auto& [section, line] : section_line) {
    if (section.rfind("rm.", 0) == 0) rm_keys[section.substr(3)];
  }
  for (const po::option& o : parsed.options) {
    const std::string& k = o.string_key;
    const std::string v = o.value.empty() ? "" : o.value.front();
    const std::string where = path + ":" + std::to_string(key_line.count(k) ? key_line[k] : 0);
    if (k.rfind("tm.", 0) == 0) {
      Status st = SetTmKey(out, k.substr(3), v);
      if (!st.ok()) return Status::InvalidArgument(where + ": " + st.message());
      continue;
    }
    if (k.rfind("server.", 0) == 0) {
      Status st = SetServerKey(out, k.substr(7), v);
      if (!st.ok()) return Status::InvalidArgument(where + ": " + st.message());
      continue;
    }
    if (k.rfind("rm.", 0) == 0) {
      size_t dot = k.rfind('.');
      if (dot <= 3) return Bad(where, "malformed key " + k);
      rm_keys[k.substr(3, dot - 3)][k.substr(dot + 1)] = v;
    }
  }
  for (const auto& [section, line] : section_line) {
    if (section.rfind("rm.", 0) != 0) continue;
    const std::string name = section.substr(3);
    auto& keys = rm_keys[name];
    const std::string where = path + ":" + std::to_string(line) + ": [" + section + "]";
    RmSpec rm;
    rm.name = name;
    auto type = keys.find("type");
    if (type == keys.end()) return Bad(where, "type is required (postgresql, sqlite or mysql)");
    if (type->second == "postgresql" || type->second == "postgres") {
      rm.type = RmSpec::Type::kPostgres;
    } else if (type->second == "sqlite") {
      rm.type = RmSpec::Type::kSqlite;
    } else if (type->second == "mysql" || type->second == "mariadb") {
      rm.type = RmSpec::Type::kMysql;
    } else {
      return Bad(where, "type must be postgresql, sqlite or mysql, not \"" + type->second + "\"");
    }
    for (const auto& [key, value] : keys) {
      const std::string kwhere = path + ":" + std::to_string(key_line[section + "." + key]) + ": [" + section + "] " + key;
      if (key == "type") continue;
      if (rm.type == RmSpec::Type::kPostgres && key == "conninfo") {
        rm.conninfo = value;
      } else if (rm.type == RmSpec::Type::kSqlite && key == "path") {
        rm.path = value;
      } else if (rm.type == RmSpec::Type::kSqlite && key == "busy_timeout_ms") {
        if (!ParseInt(value, 0, 3600000, &rm.busy_timeout_ms)) return Bad(kwhere, "must be milliseconds, not \"" + value + "\"");
      } else if (rm.type == RmSpec::Type::kMysql && kMysqlKeys.count(key)) {
        // The RM's own key=value pairs, each value quoted.
        if (!rm.conninfo.empty()) rm.conninfo += ' ';
        rm.conninfo += key + "='" + QuoteForMysqlInfo(value) + "'";
      } else {
        const char* known = rm.type == RmSpec::Type::kPostgres ? "type, conninfo"
                            : rm.type == RmSpec::Type::kMysql
                                ? "type, host, port, socket, user, password, database, durability"
                                : "type, path, busy_timeout_ms";
        return Bad(kwhere, std::string("unknown key for type = ") + RmTypeName(rm.type) + " (known: " + known + ")");
      }
    }
    rm.path = FromConfigDir(path, rm.path);
    Status st = AddRm(out, std::move(rm));
    if (!st.ok()) return st;
  }
  out->log_dir = FromConfigDir(path, out->log_dir);
  out->log_file = FromConfigDir(path, out->log_file);
  out->srv.token_file = FromConfigDir(path, out->srv.token_file);
  return ValidateConfig(*out);
}

}  // namespace xtm::tm
