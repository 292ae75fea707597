// The MariaDB server the mysql tests run against.
//
// scripts/test.sh starts one private server (scripts/mariadb-server.sh) and
// exports XATM_TEST_MYSQL_SOCKET for every test. A test binary run on its
// own, without that variable, starts a private server of its own in a
// temporary directory the first time it asks, and stops it when the binary
// exits. Never a server started by hand.
#pragma once

#include <mysql.h>

#include <string>

namespace xtm::test {

struct MysqlServer {
  std::string socket;  // root, no password, over this Unix socket
  std::string dir;
};

// The server, starting a private one if needed; aborts the test binary if
// none can be had.
const MysqlServer& Mysql();

// The MySQL RM's xa_info for database db of server socket (root, no password).
std::string MysqlInfo(const std::string& socket, const std::string& db);

// A fresh database with a unique name on the shared server, dropped (with
// every prepared XA branch of the server rolled back first) when it goes.
class ScratchMysqlDb {
 public:
  ScratchMysqlDb();
  ~ScratchMysqlDb();
  const std::string& name() const { return name_; }
  // The MySQL RM's xa_info for it.
  const std::string& info() const { return info_; }

 private:
  std::string name_;
  std::string info_;
};

// A connection as root over socket (database db, may be empty) that fails
// the test if it cannot connect.
MYSQL* MysqlConnectOrDie(const std::string& socket, const std::string& db = "");
// Runs sql (one statement); fails the test unless it succeeds. Returns the
// first column of the first row ("" if none).
std::string MysqlExec(MYSQL* my, const std::string& sql);
// How many prepared XA branches the server lists.
int MysqlPrepared(const std::string& socket);
// Rolls back every prepared XA branch the server lists (they hold locks a
// DROP DATABASE would wait for).
void MysqlRollbackEveryPrepared(MYSQL* my);

// A server of a test's own, for tests that kill or restart it. Started by the
// constructor, stopped and removed by the destructor.
class OwnMysql {
 public:
  // tcp: also listen on 127.0.0.1 (port()), for the message-loss proxy.
  explicit OwnMysql(bool tcp = false);
  ~OwnMysql();
  OwnMysql(const OwnMysql&) = delete;
  OwnMysql& operator=(const OwnMysql&) = delete;
  const std::string& socket() const { return socket_; }
  const std::string& dir() const { return dir_; }
  int port() const { return port_; }
  // mode: immediate (SIGKILL) or fast.
  void Restart(const std::string& mode = "immediate");
  void Stop(const std::string& mode = "immediate");
  void Start();

 private:
  std::string dir_;
  std::string socket_;
  pid_t owner_;
  int port_ = 0;
};

}  // namespace xtm::test
