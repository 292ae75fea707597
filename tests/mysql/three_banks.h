// A bank on three databases for the MySQL tests: accounts and a transfer
// journal in a PostgreSQL database ("bank"), a MariaDB database ("shop") and
// a SQLite file ("ledger"), and TM configurations over any two of them.
#pragma once

#include <set>
#include <string>

#include "support/mysql_server.h"
#include "support/pg_cluster.h"
#include "xatm/xatm.h"

namespace xtm::test {

enum class Side { kPg, kMysql, kSqlite };
const char* RmName(Side s);  // bank, shop, ledger

class ThreeBanks {
 public:
  static constexpr int kAccounts = 10;
  static constexpr int kOpening = 1000;

  // dir: where the SQLite file, the log and the configurations go.
  // mysql_socket: the MariaDB server (the shared one if empty); a database of
  // the bank's own is created there.
  explicit ThreeBanks(const std::string& dir, const std::string& mysql_socket = "");
  ~ThreeBanks();

  // The RM reaches MariaDB over TCP at 127.0.0.1:port (a proxy) instead of
  // the socket.
  void UseMysqlPort(int port) { mysql_port_ = port; }
  // A configuration file with the three RMs; tm_extra: more [tm] lines.
  std::string WriteConfig(const std::string& tm_extra = "", const std::string& file = "xatm.conf") const;

  // Inside tx: moves amount from account `from` on side a to account `to` on
  // side b and records transfer id on both. false if a statement failed.
  static bool Transfer(xatm_tx* tx, Side a, Side b, long id, int from, int to, int amount);
  // One statement on side s inside tx; false if it failed.
  static bool Exec(xatm_tx* tx, Side s, const std::string& sql);

  long Sum(Side s) const;
  std::set<long> Transfers(Side s) const;
  int Prepared(Side s) const;  // our branches left prepared there

  const std::string& mysql_socket() const { return socket_; }
  const std::string& mysql_db() const { return my_db_; }
  const std::string& log_dir() const { return log_dir_; }
  const std::string& pg() const { return pg_.conninfo(); }

 private:
  ScratchDb pg_;
  std::string dir_, sqlite_, log_dir_, socket_, my_db_;
  int mysql_port_ = 0;
};

}  // namespace xtm::test
