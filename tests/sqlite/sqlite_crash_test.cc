// Crash tests of the SQLite RM's durable prepare: a child process is killed
// (SIGKILL, by itself at a named crash point or by the parent) at each
// durability point, and a new process recovers the branch.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>

#include "sqlite/sqlite_test_util.h"
#include "support/fork_child.h"
#include "support/temp_dir.h"

namespace xtm::test {
namespace {

#ifdef XATM_FAULT_INJECTION

using Clock = std::chrono::steady_clock;

const char kSchema[] =
    "PRAGMA journal_mode = WAL;"
    "CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT, data BLOB, r REAL, n INTEGER);"
    "CREATE TABLE w (k1 TEXT, k2 INTEGER, v TEXT, PRIMARY KEY (k1, k2)) WITHOUT ROWID;"
    "CREATE TABLE c (x INTEGER NOT NULL, y TEXT NOT NULL, z BLOB, PRIMARY KEY (x, y));"
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50)"
    "  INSERT INTO a SELECT i, 'name' || i, x'00ff00' || zeroblob(i), i / 3.0, CASE WHEN i % 5 = 0 THEN NULL ELSE i END FROM s;"
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 30)"
    "  INSERT INTO w SELECT 'k' || (i % 4), i, 'v' || i FROM s;"
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20)"
    "  INSERT INTO c SELECT i, 'y' || i, CASE WHEN i % 2 = 0 THEN NULL ELSE x'cafe' END FROM s;";

// Inserts, updates and deletes of every kind: BLOBs, NULLs, WITHOUT ROWID,
// composite keys, a key-changing update.
const char* kBranch[] = {
    "INSERT INTO a VALUES (1000, NULL, x'000102030405', NULL, NULL)",
    "INSERT INTO a VALUES (1001, 'quote''s', zeroblob(1000), -1.25, 9223372036854775807)",
    "UPDATE a SET name = NULL, data = x'ff' WHERE id % 7 = 0",
    "UPDATE a SET r = r * 2 WHERE id BETWEEN 10 AND 20",
    "DELETE FROM a WHERE id % 11 = 0",
    "INSERT INTO w VALUES ('new', 1, NULL)",
    "UPDATE w SET v = 'changed' WHERE k1 = 'k1'",
    "DELETE FROM w WHERE k1 = 'k2' AND k2 < 20",
    "UPDATE c SET x = x + 1000 WHERE x < 5",
    "UPDATE c SET z = x'beef' WHERE z IS NULL",
    "DELETE FROM c WHERE x = 10",
};

void MakeDb(const std::string& path) { ASSERT_EQ(SQLITE_OK, Plain(path).Run(kSchema)); }

// The database the branch must produce: the same statements in a plain
// transaction.
std::string Expected(const TempDir& d) {
  const std::string e = d / "expected.db";
  MakeDb(e);
  Plain p(e);
  p.Run("BEGIN");
  for (const char* s : kBranch) EXPECT_EQ(SQLITE_OK, p.Run(s)) << s;
  p.Run("COMMIT");
  return Dump(p.db());
}

// Runs body in a child process with XATM_CRASH_AT=crash_at (if not empty);
// returns how the child ended: the signal that killed it, or -exit status.
int InChild(const std::string& crash_at, const std::function<int()>& body) {
  pid_t pid = ForkChild();
  if (pid == 0) {
    if (!crash_at.empty()) ::setenv("XATM_CRASH_AT", crash_at.c_str(), 1);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFSIGNALED(status) ? WTERMSIG(status) : -WEXITSTATUS(status);
}

// The branch of kBranch, prepared on rmid in this process.
int PrepareBranch(const std::string& path, int rmid, const XID& x) {
  if (SqOpen(rmid, "path=" + path) != XA_OK || SqStart(x, rmid) != XA_OK) return 10;
  for (const char* s : kBranch) {
    if (sqlite3_exec(xatm_sqlite_db(rmid), s, nullptr, nullptr, nullptr) != SQLITE_OK) return 11;
  }
  if (SqEnd(x, rmid) != XA_OK) return 12;
  return SqPrepare(x, rmid) == XA_OK ? 0 : 13;
}

TEST(SqliteCrash, KilledRightAfterTheSidecarWriteIsRecoveredExactly) {
  TempDir d;
  const std::string db = d / "main.db";
  MakeDb(db);
  const std::string before = DumpFile(db), want = Expected(d);
  XID x = SqXid("crash-after-sidecar");
  ASSERT_EQ(SIGKILL, InChild("sqlite.prepare.after_sidecar_write", [&] { return PrepareBranch(db, 9, x); }));
  EXPECT_EQ(before, DumpFile(db));  // the journal rolled the branch back
  ASSERT_EQ(XA_OK, SqOpen(1, "path=" + db));
  std::vector<XID> found = SqRecoverAll(1);
  ASSERT_EQ(1u, found.size());
  EXPECT_TRUE(rm::XidEqual(x, found[0]));
  ASSERT_EQ(XA_OK, SqCommit(found[0], 1)) << xatm_sqlite_errmsg(1);
  EXPECT_EQ(want, DumpFile(db));
  // Committing twice never applies twice.
  EXPECT_EQ(XAER_NOTA, SqCommit(x, 1));
  EXPECT_EQ(want, DumpFile(db));
  SqClose(1);
}

TEST(SqliteCrash, KilledAfterPrepareReturnedCanBeRolledBack) {
  TempDir d;
  const std::string db = d / "main.db";
  MakeDb(db);
  const std::string before = DumpFile(db);
  XID x = SqXid("killed-prepared");
  int fds[2];
  ASSERT_EQ(0, ::pipe(fds));
  pid_t pid = ForkChild();
  if (pid == 0) {
    int rc = PrepareBranch(db, 9, x);
    if (::write(fds[1], &rc, sizeof rc) != sizeof rc) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  int rc = -1;
  ASSERT_EQ(static_cast<ssize_t>(sizeof rc), ::read(fds[0], &rc, sizeof rc));
  ASSERT_EQ(0, rc);
  {
    // While the child lives, its prepared branch holds the write lock.
    Plain other(db, 50);
    EXPECT_EQ(SQLITE_BUSY, other.Run("DELETE FROM a"));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ASSERT_EQ(XA_OK, SqOpen(1, "path=" + db));
  ASSERT_EQ(1u, SqRecoverAll(1).size());
  ASSERT_EQ(XA_OK, SqRollback(x, 1));
  EXPECT_TRUE(SqRecoverAll(1).empty());
  EXPECT_EQ(before, DumpFile(db));
  SqClose(1);
}

TEST(SqliteCrash, KilledBetweenMainCommitAndSidecarDeleteCommitsOnlyOnce) {
  TempDir d;
  const std::string db = d / "main.db";
  MakeDb(db);
  const std::string want = Expected(d);
  XID x = SqXid("crash-after-commit");
  ASSERT_EQ(SIGKILL, InChild("sqlite.commit.after_main_commit", [&] {
              int rc = PrepareBranch(db, 9, x);
              return rc != 0 ? rc : (SqCommit(x, 9) == XA_OK ? 0 : 14);
            }));
  EXPECT_EQ(want, DumpFile(db));  // committed
  // Its record is still in the sidecar, but the marker says it committed: a
  // recovery commit finishes it without applying anything again, and it is
  // not reported in doubt.
  EXPECT_EQ("1", Plain(sqlite::SidecarPath(db)).One("SELECT count(*) FROM prepared"));
  ASSERT_EQ(XA_OK, SqOpen(1, "path=" + db));
  ASSERT_EQ(XA_OK, SqCommit(x, 1)) << xatm_sqlite_errmsg(1);
  EXPECT_EQ(want, DumpFile(db));
  EXPECT_TRUE(SqRecoverAll(1).empty());
  EXPECT_EQ(XAER_NOTA, SqCommit(x, 1));
  SqClose(1);
}

TEST(SqliteCrash, CommittedBranchLeftInTheSidecarIsNotReportedInDoubt) {
  TempDir d;
  const std::string db = d / "main.db";
  MakeDb(db);
  const std::string want = Expected(d);
  XID x = SqXid("crash-after-commit-2");
  ASSERT_EQ(SIGKILL, InChild("sqlite.commit.after_main_commit", [&] {
              int rc = PrepareBranch(db, 9, x);
              return rc != 0 ? rc : (SqCommit(x, 9) == XA_OK ? 0 : 14);
            }));
  ASSERT_EQ(XA_OK, SqOpen(1, "path=" + db));
  EXPECT_TRUE(SqRecoverAll(1).empty());
  EXPECT_EQ("0", Plain(sqlite::SidecarPath(db)).One("SELECT count(*) FROM prepared"));
  EXPECT_EQ(XAER_NOTA, SqCommit(x, 1));  // done, as after a lost commit reply
  EXPECT_EQ(want, DumpFile(db));
  SqClose(1);
}

TEST(SqliteCrash, KilledDuringARecoveryApplyIsReplayedAgain) {
  TempDir d;
  const std::string db = d / "main.db";
  MakeDb(db);
  const std::string before = DumpFile(db), want = Expected(d);
  XID x = SqXid("crash-mid-replay");
  ASSERT_EQ(SIGKILL, InChild("sqlite.prepare.after_sidecar_write", [&] { return PrepareBranch(db, 9, x); }));
  // A recovering process dies while applying the second table.
  ASSERT_EQ(SIGKILL, InChild("sqlite.replay.apply_table:2", [&] {
              if (SqOpen(9, "path=" + db) != XA_OK) return 20;
              return SqCommit(x, 9) == XA_OK ? 0 : 21;
            }));
  EXPECT_EQ(before, DumpFile(db));  // the half-applied replay rolled back
  ASSERT_EQ(XA_OK, SqOpen(1, "path=" + db));
  ASSERT_EQ(XA_OK, SqCommit(x, 1)) << xatm_sqlite_errmsg(1);
  EXPECT_EQ(want, DumpFile(db));
  SqClose(1);
}

TEST(SqliteCrash, HundredThousandRowBranchPreparedKilledAndRecovered) {
  TempDir d;
  const std::string db = d / "big.db";
  ASSERT_EQ(SQLITE_OK, Plain(db).Run(
      "PRAGMA journal_mode = WAL;"
      "CREATE TABLE big (id INTEGER PRIMARY KEY, s TEXT NOT NULL, b BLOB);"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20000)"
      "  INSERT INTO big SELECT i, 'old' || i, zeroblob(16) FROM s;"));
  const char* work[] = {
      "WITH RECURSIVE s(i) AS (SELECT 100001 UNION ALL SELECT i + 1 FROM s WHERE i < 200000)"
      "  INSERT INTO big SELECT i, 'new' || i, x'0102' FROM s",
      "UPDATE big SET s = 'upd' || id WHERE id <= 10000",
      "DELETE FROM big WHERE id > 10000 AND id <= 20000",
  };
  XID x = SqXid("big");
  int fds[2];
  ASSERT_EQ(0, ::pipe(fds));
  pid_t pid = ForkChild();
  if (pid == 0) {
    double ms = -1;
    if (SqOpen(9, "path=" + db) == XA_OK && SqStart(x, 9) == XA_OK) {
      bool ok = true;
      for (const char* s : work) ok = ok && sqlite3_exec(xatm_sqlite_db(9), s, nullptr, nullptr, nullptr) == SQLITE_OK;
      auto t0 = Clock::now();
      if (ok && SqEnd(x, 9) == XA_OK && SqPrepare(x, 9) == XA_OK) {
        ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      }
    }
    if (::write(fds[1], &ms, sizeof ms) != sizeof ms) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  double prepare_ms = -1;
  ASSERT_EQ(static_cast<ssize_t>(sizeof prepare_ms), ::read(fds[0], &prepare_ms, sizeof prepare_ms));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ASSERT_GE(prepare_ms, 0) << "the child could not prepare";
  ASSERT_EQ("20000", Plain(db).One("SELECT count(*) FROM big"));
  ASSERT_EQ(XA_OK, SqOpen(1, "path=" + db));
  auto t0 = Clock::now();
  ASSERT_EQ(XA_OK, SqCommit(x, 1)) << xatm_sqlite_errmsg(1);
  const double recover_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  std::printf("100k-insert + 10k-update + 10k-delete branch: prepare %.0f ms, recovery commit %.0f ms\n",
              prepare_ms, recover_ms);
  Plain p(db);
  EXPECT_EQ("110000", p.One("SELECT count(*) FROM big"));
  EXPECT_EQ("10000", p.One("SELECT count(*) FROM big WHERE s LIKE 'upd%'"));
  EXPECT_EQ("100000", p.One("SELECT count(*) FROM big WHERE s = 'new' || id AND b = x'0102'"));
  EXPECT_EQ("0", p.One("SELECT count(*) FROM big WHERE id > 10000 AND id <= 20000"));
  SqClose(1);
}

TEST(SqliteCrash, TwoProcessesWithBranchesOnOneFileSerialize) {
  TempDir d;
  const std::string db = d / "shared.db";
  ASSERT_EQ(SQLITE_OK, Plain(db).Run("PRAGMA journal_mode = WAL; CREATE TABLE n (id INTEGER PRIMARY KEY, v INTEGER);"
                                     "INSERT INTO n VALUES (1, 0)"));
  std::vector<pid_t> kids;
  for (int k = 0; k < 2; ++k) {
    pid_t pid = ForkChild();
    if (pid == 0) {
      if (SqOpen(9, "path=" + db + " busy_timeout_ms=20000") != XA_OK) ::_exit(30);
      for (int i = 0; i < 25; ++i) {
        XID x = SqXid("proc" + std::to_string(k) + "-" + std::to_string(i));
        if (SqStart(x, 9) != XA_OK) ::_exit(31);
        if (sqlite3_exec(xatm_sqlite_db(9), "UPDATE n SET v = v + 1", nullptr, nullptr, nullptr) != SQLITE_OK) ::_exit(32);
        if (SqEnd(x, 9) != XA_OK || SqPrepare(x, 9) != XA_OK || SqCommit(x, 9) != XA_OK) ::_exit(33);
      }
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  }
  EXPECT_EQ("50", Plain(db).One("SELECT v FROM n"));
}

#else

TEST(SqliteCrash, NeedsTheFaultInjectionBuild) {
  GTEST_SKIP() << "configure with -DXATM_FAULT_INJECTION=ON (scripts/test.sh does) to run the crash tests";
}

#endif

}  // namespace
}  // namespace xtm::test
