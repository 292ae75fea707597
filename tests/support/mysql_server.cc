#include "support/mysql_server.h"

#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

namespace xtm::test {
namespace {

std::string Script() { return std::string("bash ") + XATM_SOURCE_DIR + "/scripts/mariadb-server.sh"; }

struct SharedServer {
  std::string dir;
  pid_t owner_pid = getpid();
  ~SharedServer() {
    if (dir.empty() || getpid() != owner_pid) return;
    const std::string cmd = Script() + " stop '" + dir + "' immediate >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not stop %s\n", dir.c_str());
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

SharedServer own_server;  // stopped when the test binary exits
MysqlServer server;
std::once_flag once;
std::atomic<int> db_counter{0};

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Starts the server of dir with the script (on port too, if not 0); false
// if it did not start.
bool StartIn(const std::string& dir, int port = 0) {
  const std::string cmd =
      Script() + " start '" + dir + "'" + (port ? " --tcp " + std::to_string(port) : std::string()) + " >/dev/null";
  return std::system(cmd.c_str()) == 0;
}

// A loopback port nobody listens on now.
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t l = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

const MysqlServer& Mysql() {
  std::call_once(once, [] {
    if (Env("XATM_TEST_MYSQL_SOCKET").empty()) {
      char tmpl[] = "/tmp/xatm-mysql-XXXXXX";
      if (::mkdtemp(tmpl) == nullptr) return;
      own_server.dir = tmpl;
      if (!StartIn(own_server.dir)) return;
      ::setenv("XATM_TEST_MYSQL_SOCKET", (own_server.dir + "/mysqld.sock").c_str(), 1);
      ::setenv("XATM_TEST_MYSQL_DIR", own_server.dir.c_str(), 1);
    }
    server.socket = Env("XATM_TEST_MYSQL_SOCKET");
    server.dir = Env("XATM_TEST_MYSQL_DIR");
  });
  if (server.socket.empty()) {
    ADD_FAILURE() << "no MariaDB server: scripts/mariadb-server.sh start failed";
    std::abort();
  }
  return server;
}

std::string MysqlInfo(const std::string& socket, const std::string& db) {
  return "socket=" + socket + " user=root" + (db.empty() ? "" : " database=" + db);
}

MYSQL* MysqlConnectOrDie(const std::string& socket, const std::string& db) {
  MYSQL* my = mysql_init(nullptr);
  if (!mysql_real_connect(my, nullptr, "root", nullptr, db.empty() ? nullptr : db.c_str(), 0, socket.c_str(), 0)) {
    ADD_FAILURE() << "cannot connect to MariaDB at " << socket << ": " << mysql_error(my);
    std::abort();
  }
  return my;
}

std::string MysqlExec(MYSQL* my, const std::string& sql) {
  if (mysql_real_query(my, sql.data(), sql.size()) != 0) {
    ADD_FAILURE() << sql << ": " << mysql_error(my);
    return "";
  }
  std::string out;
  if (MYSQL_RES* res = mysql_store_result(my)) {
    MYSQL_ROW row = mysql_fetch_row(res);
    if (row && mysql_num_fields(res) > 0 && row[0]) out = row[0];
    mysql_free_result(res);
  }
  return out;
}

int MysqlPrepared(const std::string& socket) {
  MYSQL* my = MysqlConnectOrDie(socket);
  int n = -1;
  if (mysql_query(my, "XA RECOVER") == 0) {
    if (MYSQL_RES* res = mysql_store_result(my)) {
      n = static_cast<int>(mysql_num_rows(res));
      mysql_free_result(res);
    }
  }
  mysql_close(my);
  return n;
}

void MysqlRollbackEveryPrepared(MYSQL* my) {
  if (mysql_query(my, "XA RECOVER") != 0) return;
  MYSQL_RES* res = mysql_store_result(my);
  if (res == nullptr) return;
  std::vector<std::string> xids;
  auto hex = [](const std::string& b) {
    static const char* d = "0123456789abcdef";
    std::string h;
    for (unsigned char c : b) {
      h += d[c >> 4];
      h += d[c & 15];
    }
    return h;
  };
  while (MYSQL_ROW row = mysql_fetch_row(res)) {
    unsigned long* len = mysql_fetch_lengths(res);
    const size_t g = std::strtoul(row[1], nullptr, 10);
    const std::string data(row[3], len[3]);
    xids.push_back("X'" + hex(data.substr(0, g)) + "',X'" + hex(data.substr(g)) + "'," + row[0]);
  }
  mysql_free_result(res);
  for (const std::string& x : xids) mysql_query(my, ("XA ROLLBACK " + x).c_str());
}

ScratchMysqlDb::ScratchMysqlDb() {
  name_ = "xatm_t" + std::to_string(getpid()) + "_" + std::to_string(db_counter++);
  MYSQL* my = MysqlConnectOrDie(Mysql().socket);
  MysqlExec(my, "CREATE DATABASE " + name_);
  mysql_close(my);
  info_ = MysqlInfo(Mysql().socket, name_);
}

ScratchMysqlDb::~ScratchMysqlDb() {
  MYSQL* my = MysqlConnectOrDie(Mysql().socket);
  // The tests of one binary run one at a time: every branch is this test's.
  MysqlRollbackEveryPrepared(my);
  mysql_query(my, ("DROP DATABASE IF EXISTS " + name_).c_str());
  mysql_close(my);
}

OwnMysql::OwnMysql(bool tcp) : owner_(getpid()), port_(tcp ? FreePort() : 0) {
  char tmpl[] = "/tmp/xatm-ownmysql-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  dir_ = tmpl;
  socket_ = dir_ + "/mysqld.sock";
  Start();
}

OwnMysql::~OwnMysql() {
  if (dir_.empty() || getpid() != owner_) return;
  Stop("immediate");
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void OwnMysql::Start() {
  if (!StartIn(dir_, port_)) ADD_FAILURE() << "cannot start MariaDB in " << dir_;
}

void OwnMysql::Stop(const std::string& mode) {
  const std::string cmd = Script() + " stop '" + dir_ + "' " + mode + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "cannot stop MariaDB in " << dir_;
}

void OwnMysql::Restart(const std::string& mode) {
  Stop(mode);
  Start();
}

}  // namespace xtm::test
