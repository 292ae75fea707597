// The MySQL RM's xa_info and the checks of the server it connects to.
#include <mysql.h>

#include <cstdlib>
#include <string>

#include "mysql/mysql_rm.h"

namespace xtm::mysql {

std::string ParseConnParams(const std::string& info, ConnParams* out) {
  *out = {};
  size_t i = 0;
  while (i < info.size()) {
    if (info[i] == ' ' || info[i] == '\t') {
      ++i;
      continue;
    }
    const size_t eq = info.find('=', i);
    if (eq == std::string::npos) return "xa_info: \"" + info.substr(i) + "\" is not key=value";
    const std::string key = info.substr(i, eq - i);
    std::string value;
    i = eq + 1;
    if (i < info.size() && info[i] == '\'') {
      ++i;
      bool closed = false;
      while (i < info.size()) {
        if (info[i] == '\\' && i + 1 < info.size()) {
          value += info[i + 1];
          i += 2;
        } else if (info[i] == '\'' && i + 1 < info.size() && info[i + 1] == '\'') {
          value += '\'';
          i += 2;
        } else if (info[i] == '\'') {
          ++i;
          closed = true;
          break;
        } else {
          value += info[i++];
        }
      }
      if (!closed) return "xa_info: the quoted value of " + key + " is not closed";
    } else {
      while (i < info.size() && info[i] != ' ' && info[i] != '\t') value += info[i++];
    }
    if (key == "host") {
      out->host = value;
    } else if (key == "port") {
      char* end = nullptr;
      const long p = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || p <= 0 || p > 65535) return "xa_info: port must be 1..65535, not \"" + value + "\"";
      out->port = static_cast<unsigned>(p);
    } else if (key == "socket") {
      out->socket = value;
    } else if (key == "user") {
      out->user = value;
    } else if (key == "password") {
      out->password = value;
      out->has_password = true;
    } else if (key == "database" || key == "dbname") {
      out->database = value;
    } else if (key == "durability") {
      if (value != "warn" && value != "require") return "xa_info: durability must be require or warn, not \"" + value + "\"";
      out->durability_warn = value == "warn";
    } else {
      return "xa_info: unknown key \"" + key + "\" (known: host, port, socket, user, password, database, durability)";
    }
  }
  return "";
}

std::string Describe(const ConnParams& p) {
  std::string s;
  auto add = [&](const char* k, const std::string& v) {
    if (v.empty()) return;
    if (!s.empty()) s += ' ';
    s += k;
    s += '=';
    s += v;
  };
  add("host", p.host);
  add("port", p.port ? std::to_string(p.port) : "");
  add("socket", p.socket);
  add("user", p.user);
  add("database", p.database);
  return s.empty() ? "defaults" : s;
}

std::string CheckVersion(const std::string& version) {
  int major = 0, minor = 0, patch = 0;
  if (std::sscanf(version.c_str(), "%d.%d.%d", &major, &minor, &patch) < 2) {
    return "cannot read the server's version \"" + version + "\"";
  }
  const bool mariadb = version.find("MariaDB") != std::string::npos;
  const int v = major * 10000 + minor * 100 + patch;
  if (mariadb && v < 100500) {
    return "MariaDB " + version +
           " rolls a prepared XA branch back when its session ends, so another session (recovery) could never "
           "commit it: use MariaDB 10.5 or later";
  }
  if (!mariadb && v < 50707) {
    return "MySQL " + version +
           " rolls a prepared XA branch back when its session ends, so another session (recovery) could never "
           "commit it: use MySQL 5.7.7 or later (8.0 recommended)";
  }
  return "";
}

std::string CheckDurability(const std::string& flush_log, const std::string& log_bin, const std::string& sync_binlog) {
  if (flush_log != "1") {
    return "innodb_flush_log_at_trx_commit = " + flush_log +
           ": a prepared or committed branch may be lost at a crash of the server; set "
           "innodb_flush_log_at_trx_commit = 1 (SET GLOBAL, and in the server's configuration)";
  }
  if (log_bin == "1" && sync_binlog != "1") {
    return "sync_binlog = " + sync_binlog +
           " with the binary log on: a prepared branch may be lost from the binary log at a crash (replicas "
           "and the server then disagree); set sync_binlog = 1 (SET GLOBAL, and in the server's configuration)";
  }
  return "";
}

MYSQL* ConnectWith(const ConnParams& p, bool with_database, unsigned long client_flags, std::string* error) {
  MYSQL* my = mysql_init(nullptr);
  if (my == nullptr) {
    *error = "out of memory";
    return nullptr;
  }
  const unsigned timeout = 10;
  mysql_optionsv(my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  auto opt = [](const std::string& v) { return v.empty() ? nullptr : v.c_str(); };
  if (!mysql_real_connect(my, opt(p.host), opt(p.user), p.has_password ? p.password.c_str() : nullptr,
                          with_database ? opt(p.database) : nullptr, p.port, opt(p.socket), client_flags)) {
    *error = mysql_error(my);
    mysql_close(my);
    return nullptr;
  }
  return my;
}

bool PreparedSummary(const std::string& info, int64_t* count, int64_t* oldest_s, std::string* error) {
  ConnParams p;
  if (std::string why = ParseConnParams(info, &p); !why.empty()) {
    *error = why;
    return false;
  }
  MYSQL* my = ConnectWith(p, /*with_database=*/false, 0, error);
  bool ok = false;
  if (my) {
    // A prepared branch no session holds is an InnoDB transaction of no
    // thread; XA RECOVER counts those a session still holds too.
    const char* sql =
        "SELECT (SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = 0), "
        "(SELECT COALESCE(MAX(TIMESTAMPDIFF(SECOND, trx_started, NOW())), -1) FROM information_schema.INNODB_TRX "
        "WHERE trx_mysql_thread_id = 0)";
    if (mysql_query(my, "XA RECOVER") == 0) {
      MYSQL_RES* res = mysql_store_result(my);
      *count = res ? static_cast<int64_t>(mysql_num_rows(res)) : 0;
      mysql_free_result(res);
      if (mysql_query(my, sql) == 0) {
        MYSQL_RES* r2 = mysql_store_result(my);
        MYSQL_ROW row = r2 ? mysql_fetch_row(r2) : nullptr;
        *oldest_s = row && row[1] ? std::strtoll(row[1], nullptr, 10) : -1;
        mysql_free_result(r2);
        ok = true;
      }
    }
    if (!ok) *error = mysql_error(my);
    mysql_close(my);
  }
  return ok;
}

}  // namespace xtm::mysql
