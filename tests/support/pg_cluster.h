// The PostgreSQL server the pg tests run against.
//
// scripts/test.sh starts one private cluster (scripts/pg-cluster.sh) and
// exports XATM_TEST_PG_CONNINFO for every test. A test binary run on its own,
// without that variable, starts a private cluster of its own in a temporary
// directory the first time it asks, and stops it when the binary exits. Never
// a server started by hand.
#pragma once

#include <libpq-fe.h>

#include <sys/types.h>

#include <string>

namespace xtm::test {

struct PgServer {
  std::string conninfo;  // superuser "postgres", database "postgres"
  std::string dir;       // the cluster's directory (socket, data/, server.log)
  std::string bindir;    // pg_ctl and friends
};

// The server, starting a private one if needed. Fails the test (fatally) if
// none can be had.
const PgServer& Pg();

// conninfo for another database of the same server.
std::string ConninfoFor(const std::string& dbname);

// A fresh database with a unique name, dropped (with any prepared
// transactions in it rolled back) when the object goes.
class ScratchDb {
 public:
  ScratchDb();
  ~ScratchDb();
  const std::string& name() const { return name_; }
  const std::string& conninfo() const { return conninfo_; }

 private:
  std::string name_;
  std::string conninfo_;
};

// A connection that fails the test if it cannot connect.
PGconn* ConnectOrDie(const std::string& conninfo);
// Runs sql; fails the test unless it succeeds. Returns the first column of
// the first row ("" if none).
std::string Exec(PGconn* c, const std::string& sql);

// A cluster of a test's own, for tests that stop, restart or misconfigure
// the server. Started by the constructor, stopped and removed by the
// destructor.
class OwnCluster {
 public:
  // tcp: also listen on 127.0.0.1 (for the message-loss proxy).
  explicit OwnCluster(int max_prepared_transactions = 64, bool tcp = false);
  // A streaming standby of primary (pg_basebackup -R), known to it as
  // standby_name (application_name, for synchronous_standby_names).
  OwnCluster(const OwnCluster& primary, const std::string& standby_name);
  ~OwnCluster();
  OwnCluster(const OwnCluster&) = delete;
  OwnCluster& operator=(const OwnCluster&) = delete;
  const std::string& conninfo() const { return conninfo_; }
  const std::string& dir() const { return dir_; }
  int port() const { return port_; }
  // Its postmaster's process id (0 if it is not running).
  pid_t postmaster() const;
  // pg_ctl stop -m MODE, then start again.
  void Restart(const std::string& mode = "immediate");
  void Stop(const std::string& mode = "immediate");
  void Start();
  // A standby becomes a primary (pg_ctl promote, waiting until it is).
  void Promote();

 private:
  void ReadPort();
  std::string dir_;
  std::string conninfo_;
  pid_t owner_;
  int max_prepared_;
  bool tcp_;
  int port_ = 0;
};

// Runs a shell command line; returns its exit status.
int Shell(const std::string& cmd);

}  // namespace xtm::test
