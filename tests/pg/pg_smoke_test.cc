// The private PostgreSQL cluster starts and takes a PREPARE TRANSACTION.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "support/fork_child.h"
#include "support/pg_cluster.h"

namespace xtm::test {
namespace {

TEST(PrivateCluster, AcceptsPrepareTransaction) {
  ScratchDb db;
  PGconn* c = ConnectOrDie(db.conninfo());
  EXPECT_NE("0", Exec(c, "SHOW max_prepared_transactions"));
  EXPECT_EQ("on", Exec(c, "SHOW fsync"));
  Exec(c, "CREATE TABLE t (id int PRIMARY KEY)");
  Exec(c, "BEGIN");
  Exec(c, "INSERT INTO t VALUES (1)");
  PGresult* r = PQexec(c, "PREPARE TRANSACTION 'xatm-smoke'");
  EXPECT_EQ(PGRES_COMMAND_OK, PQresultStatus(r));
  EXPECT_STREQ("PREPARE TRANSACTION", PQcmdStatus(r));
  PQclear(r);
  EXPECT_EQ("1", Exec(c, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'xatm-smoke'"));
  EXPECT_EQ("0", Exec(c, "SELECT count(*) FROM t"));
  Exec(c, "COMMIT PREPARED 'xatm-smoke'");
  EXPECT_EQ("1", Exec(c, "SELECT count(*) FROM t"));
  PQfinish(c);
}

// A test process that aborts (ConnectOrDie does; no destructor runs) still
// stops the servers it started and removes their directories: nothing is left
// running or in /tmp after the test binary.
TEST(PrivateCluster, AnAbortedProcessStopsItsOwnCluster) {
  int fds[2];
  ASSERT_EQ(0, ::pipe(fds));
  pid_t child = ForkChild();
  if (child == 0) {
    ::close(fds[0]);
    OwnCluster c;
    struct {
      pid_t postmaster;
      char dir[200];
    } what{c.postmaster(), {}};
    std::strncpy(what.dir, c.dir().c_str(), sizeof what.dir - 1);
    if (::write(fds[1], &what, sizeof what) != static_cast<ssize_t>(sizeof what)) ::_exit(2);
    std::abort();
  }
  ::close(fds[1]);
  struct {
    pid_t postmaster;
    char dir[200];
  } what{};
  const bool got = ::read(fds[0], &what, sizeof what) == static_cast<ssize_t>(sizeof what);
  ::close(fds[0]);
  int st = 0;
  ::waitpid(child, &st, 0);
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT) << "status " << st;
  ASSERT_TRUE(got);
  ASSERT_GT(what.postmaster, 0);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = ::kill(what.postmaster, 0) != 0 && errno == ESRCH;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(gone) << "the aborted process's postmaster " << what.postmaster << " is still running";
  if (!gone) ::kill(what.postmaster, SIGQUIT);
  // Its directory goes too, once the server is gone.
  bool removed = false;
  for (int i = 0; i < 100 && !removed; ++i) {
    removed = !std::filesystem::exists(what.dir);
    if (!removed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(removed) << "the aborted process's cluster directory " << what.dir << " is still there";
  std::error_code ec;
  std::filesystem::remove_all(what.dir, ec);
}

}  // namespace
}  // namespace xtm::test
