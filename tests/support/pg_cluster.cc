#include "support/pg_cluster.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>

namespace xtm::test {
namespace {

// The postmasters this process started, each with the process that owns it
// and the cluster's directory. An abort (ConnectOrDie, a failed check in a
// helper) runs no destructor, so a SIGABRT handler shuts them down (SIGQUIT:
// immediate shutdown) and leaves a process behind that removes each
// directory once its server is gone, lest an aborted test binary leave
// servers running and their files in /tmp. A forked child's abort leaves its
// parent's clusters alone. A slot is claimed (-1) before its directory is
// written and its postmaster published.
constexpr int kMaxPostmasters = 32;
constexpr size_t kMaxDir = 256;
std::atomic<pid_t> g_postmaster[kMaxPostmasters];
std::atomic<pid_t> g_postmaster_owner[kMaxPostmasters];
char g_postmaster_dir[kMaxPostmasters][kMaxDir];
struct sigaction g_previous_abort_action;

// In a child of the aborting process: waits (at most 30 s) for the
// postmaster to exit, then removes its directory. Async-signal-safe calls only.
[[noreturn]] void RemoveWhenGone(pid_t pm, const char* dir) {
  for (int i = 0; i < 3000 && ::kill(pm, 0) == 0; ++i) {
    struct timespec ts {0, 10 * 1000 * 1000};
    ::nanosleep(&ts, nullptr);
  }
  char rm[] = "/bin/rm", rf[] = "-rf";
  char* const argv[] = {rm, rf, const_cast<char*>(dir), nullptr};
  ::execv(rm, argv);
  ::_exit(127);
}

void StopPostmastersOnAbort(int sig) {
  const pid_t self = getpid();
  for (int i = 0; i < kMaxPostmasters; ++i) {
    const pid_t pm = g_postmaster[i].load();
    if (pm <= 0 || g_postmaster_owner[i].load() != self) continue;
    ::kill(pm, SIGQUIT);
    if (g_postmaster_dir[i][0] == '/' && ::fork() == 0) RemoveWhenGone(pm, g_postmaster_dir[i]);
  }
  sigaction(SIGABRT, &g_previous_abort_action, nullptr);
  ::raise(sig);
}

// The postmaster of a cluster made by scripts/pg-cluster.sh in dir; 0 if none.
pid_t PostmasterOf(const std::string& dir) {
  FILE* f = std::fopen((dir + "/data/postmaster.pid").c_str(), "r");
  long pid = 0;
  if (f != nullptr && std::fscanf(f, "%ld", &pid) != 1) pid = 0;
  if (f != nullptr) std::fclose(f);
  return static_cast<pid_t>(pid);
}

void RegisterPostmaster(const std::string& dir) {
  static std::once_flag installed;
  std::call_once(installed, [] {
    struct sigaction sa {};
    sa.sa_handler = StopPostmastersOnAbort;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, &g_previous_abort_action);
  });
  const pid_t pm = PostmasterOf(dir);
  if (pm <= 0) return;
  for (int i = 0; i < kMaxPostmasters; ++i) {
    pid_t free_slot = 0;
    if (g_postmaster[i].compare_exchange_strong(free_slot, -1)) {
      g_postmaster_dir[i][0] = '\0';
      if (dir.size() < kMaxDir) std::memcpy(g_postmaster_dir[i], dir.c_str(), dir.size() + 1);
      g_postmaster_owner[i] = getpid();
      g_postmaster[i] = pm;
      return;
    }
  }
}

void UnregisterPostmaster(const std::string& dir) {
  const pid_t pm = PostmasterOf(dir);
  for (int i = 0; i < kMaxPostmasters && pm > 0; ++i) {
    pid_t mine = pm;
    g_postmaster[i].compare_exchange_strong(mine, 0);
  }
}

struct SharedCluster {
  std::string dir;
  ~SharedCluster() {
    if (dir.empty() || getpid() != owner_pid) return;
    std::string cmd = std::string("bash ") + XATM_SOURCE_DIR + "/scripts/pg-cluster.sh stop '" + dir +
                      "' immediate >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not stop %s\n", dir.c_str());
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  pid_t owner_pid = getpid();
};

SharedCluster own_cluster;  // stopped when the test binary exits
PgServer server;
std::once_flag once;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

void StartOwnCluster() {
  char tmpl[] = "/tmp/xatm-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return;
  own_cluster.dir = tmpl;
  std::string out_file = own_cluster.dir + ".env";
  std::string cmd = std::string("bash ") + XATM_SOURCE_DIR + "/scripts/pg-cluster.sh start '" +
                    own_cluster.dir + "' > '" + out_file + "'";
  if (std::system(cmd.c_str()) != 0) return;
  RegisterPostmaster(own_cluster.dir);
  // Each line: export NAME='value'
  FILE* f = std::fopen(out_file.c_str(), "r");
  char line[1024];
  while (f && std::fgets(line, sizeof line, f)) {
    std::string l(line);
    size_t eq = l.find('='), q1 = l.find('\''), q2 = l.rfind('\'');
    if (eq == std::string::npos || q1 == std::string::npos || q2 <= q1) continue;
    std::string name = l.substr(7, eq - 7), value = l.substr(q1 + 1, q2 - q1 - 1);
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  if (f) std::fclose(f);
  std::remove(out_file.c_str());
}

std::atomic<int> db_counter{0};

}  // namespace

const PgServer& Pg() {
  std::call_once(once, [] {
    if (Env("XATM_TEST_PG_CONNINFO").empty()) StartOwnCluster();
    server.conninfo = Env("XATM_TEST_PG_CONNINFO");
    server.dir = Env("XATM_TEST_PG_DIR");
    server.bindir = Env("XATM_TEST_PG_BIN");
  });
  if (server.conninfo.empty()) {
    ADD_FAILURE() << "no PostgreSQL server: scripts/pg-cluster.sh start failed";
    std::abort();
  }
  return server;
}

std::string ConninfoFor(const std::string& dbname) { return Pg().conninfo + " dbname=" + dbname; }

PGconn* ConnectOrDie(const std::string& conninfo) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    ADD_FAILURE() << "connect " << conninfo << ": " << PQerrorMessage(c);
    std::abort();
  }
  return c;
}

std::string Exec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  ExecStatusType st = PQresultStatus(r);
  std::string v;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    ADD_FAILURE() << sql << ": " << PQerrorMessage(c);
  } else if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0) {
    v = PQgetvalue(r, 0, 0);
  }
  PQclear(r);
  return v;
}

namespace {
std::string ClusterScript() { return std::string("bash ") + XATM_SOURCE_DIR + "/scripts/pg-cluster.sh"; }
}  // namespace

OwnCluster::OwnCluster(int max_prepared, bool tcp) : owner_(getpid()), max_prepared_(max_prepared), tcp_(tcp) {
  char tmpl[] = "/tmp/xatm-pgown-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  dir_ = tmpl;
  Start();
  ReadPort();
}

OwnCluster::OwnCluster(const OwnCluster& primary, const std::string& standby_name)
    : owner_(getpid()), max_prepared_(primary.max_prepared_), tcp_(false) {
  char tmpl[] = "/tmp/xatm-pgown-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  dir_ = tmpl;
  if (Shell(ClusterScript() + " standby '" + dir_ + "' '" + primary.dir() + "' " + standby_name + " >/dev/null") != 0) {
    ADD_FAILURE() << "could not make a standby of " << primary.dir() << " in " << dir_;
  }
  RegisterPostmaster(dir_);
  ReadPort();
}

void OwnCluster::Promote() {
  if (Shell(ClusterScript() + " promote '" + dir_ + "'") != 0) ADD_FAILURE() << "could not promote " << dir_;
}

void OwnCluster::ReadPort() {
  // Not the superuser's database: a scratch one would do, but the tests
  // here own the whole cluster.
  std::string port;
  FILE* f = std::fopen((dir_ + "/port").c_str(), "r");
  char buf[32] = {0};
  if (f && std::fgets(buf, sizeof buf, f)) port = buf;
  if (f) std::fclose(f);
  while (!port.empty() && port.back() == '\n') port.pop_back();
  port_ = port.empty() ? 0 : std::stoi(port);
  conninfo_ = "host=" + dir_ + " port=" + port + " user=postgres dbname=postgres";
}

pid_t OwnCluster::postmaster() const { return PostmasterOf(dir_); }

void OwnCluster::Start() {
  std::string cmd = "XATM_PG_MAX_PREPARED=" + std::to_string(max_prepared_) + " " + ClusterScript() +
                    " start '" + dir_ + "'" + (tcp_ ? " --tcp" : "") + " >/dev/null";
  if (Shell(cmd) != 0) ADD_FAILURE() << "could not start a cluster in " << dir_;
  RegisterPostmaster(dir_);
}

void OwnCluster::Stop(const std::string& mode) {
  UnregisterPostmaster(dir_);
  if (Shell(ClusterScript() + " stop '" + dir_ + "' " + mode + " >/dev/null") != 0) {
    ADD_FAILURE() << "could not stop the cluster in " << dir_;
  }
}

void OwnCluster::Restart(const std::string& mode) {
  Stop(mode);
  Start();
}

OwnCluster::~OwnCluster() {
  if (dir_.empty() || getpid() != owner_) return;
  UnregisterPostmaster(dir_);
  Shell(ClusterScript() + " stop '" + dir_ + "' immediate >/dev/null 2>&1");
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

int Shell(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

ScratchDb::ScratchDb() {
  name_ = "xatm_t" + std::to_string(getpid()) + "_" + std::to_string(db_counter++);
  PGconn* c = ConnectOrDie(Pg().conninfo);
  Exec(c, "CREATE DATABASE " + name_);
  PQfinish(c);
  conninfo_ = ConninfoFor(name_);
}

ScratchDb::~ScratchDb() {
  PGconn* c = PQconnectdb(Pg().conninfo.c_str());
  if (PQstatus(c) == CONNECTION_OK) {
    // DROP DATABASE fails while a prepared transaction of it exists.
    PGresult* r = PQexec(
        c, ("SELECT gid FROM pg_prepared_xacts WHERE database = '" + name_ + "'").c_str());
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); ++i) {
      PGconn* d = PQconnectdb(conninfo_.c_str());
      char* lit = PQescapeLiteral(d, PQgetvalue(r, i, 0), strlen(PQgetvalue(r, i, 0)));
      PQclear(PQexec(d, (std::string("ROLLBACK PREPARED ") + lit).c_str()));
      PQfreemem(lit);
      PQfinish(d);
    }
    PQclear(r);
    PQclear(PQexec(c, ("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)").c_str()));
  }
  PQfinish(c);
}

}  // namespace xtm::test
