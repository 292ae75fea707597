// The SQLite resource manager on real database files: the XA state tables,
// the durable prepare, what a changeset cannot carry (PITFALLS 13-22).
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "sqlite/sqlite_test_util.h"
#include "support/temp_dir.h"

namespace xtm::test {
namespace {

class SqliteRmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_ / "bank.db";
    Plain p(path_);
    ASSERT_EQ(SQLITE_OK, p.Run("PRAGMA journal_mode = WAL;"
                               "CREATE TABLE acct (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, note TEXT);"
                               "INSERT INTO acct VALUES (1, 100, 'a'), (2, 100, 'b'), (3, 100, 'c');"));
    ASSERT_EQ(XA_OK, SqOpen(1, Info())) << xatm_sqlite_errmsg(1);
  }
  void TearDown() override {
    SqClose(1);
    SqClose(2);
  }
  std::string Info() const { return "path=" + path_ + " busy_timeout_ms=2000"; }
  int Run(int rmid, const std::string& sql) {
    return sqlite3_exec(xatm_sqlite_db(rmid), sql.c_str(), nullptr, nullptr, nullptr);
  }
  std::string V(int id) { return Plain(path_).One("SELECT v FROM acct WHERE id = " + std::to_string(id)); }
  // Starts x on rmid, runs sql in it, ends it and prepares it: the code of
  // the first call that did not answer XA_OK (-1 for the statement), or the
  // prepare's.
  int PrepareWith(XID x, int rmid, const std::string& sql) {
    if (int r = SqStart(x, rmid); r != XA_OK) return r;
    if (Run(rmid, sql) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(xatm_sqlite_db(rmid));
      return -1;
    }
    if (int r = SqEnd(x, rmid); r != XA_OK) return r;
    return SqPrepare(x, rmid);
  }

  TempDir dir_;
  std::string path_;
};

TEST_F(SqliteRmTest, PreparedBranchIsInvisibleAndLockedUntilCommit) {
  XID x = SqXid("g1");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = v - 10 WHERE id = 1")) << xatm_sqlite_errmsg(1);
  // The prepared record is durable in the sidecar.
  EXPECT_TRUE(std::filesystem::exists(sqlite::SidecarPath(path_)));
  ASSERT_EQ(1u, SqRecoverAll(1).size());
  {
    Plain other(path_, 100);
    EXPECT_EQ("100", other.One("SELECT v FROM acct WHERE id = 1"));  // readers not blocked (WAL)
    EXPECT_EQ(SQLITE_BUSY, other.Run("UPDATE acct SET v = 0 WHERE id = 2"));  // writers wait
  }
  ASSERT_EQ(XA_OK, SqCommit(x, 1)) << xatm_sqlite_errmsg(1);
  EXPECT_EQ("90", V(1));
  EXPECT_TRUE(SqRecoverAll(1).empty());
  EXPECT_EQ(XAER_NOTA, SqCommit(x, 1));
}

TEST_F(SqliteRmTest, RollbackOfAPreparedBranchDiscardsIt) {
  XID x = SqXid("g-rb");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "DELETE FROM acct WHERE id = 2")) << xatm_sqlite_errmsg(1);
  ASSERT_EQ(XA_OK, SqRollback(x, 1));
  EXPECT_EQ("100", V(2));
  EXPECT_TRUE(SqRecoverAll(1).empty());
}

TEST_F(SqliteRmTest, ReadOnlyBranchVotesReadOnlyAndKeepsNoLock) {
  XID x = SqXid("g-ro");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  EXPECT_EQ("100", Plain::OneOn(xatm_sqlite_db(1), "SELECT v FROM acct WHERE id = 3"));
  ASSERT_EQ(XA_OK, SqEnd(x, 1));
  EXPECT_EQ(XA_RDONLY, SqPrepare(x, 1));
  Plain other(path_, 0);
  EXPECT_EQ(SQLITE_OK, other.Run("UPDATE acct SET v = 1 WHERE id = 3"));
  EXPECT_TRUE(SqRecoverAll(1).empty());
}

TEST_F(SqliteRmTest, OnePhaseCommitWritesNoSidecarRecord) {
  XID x = SqXid("g-1pc");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  ASSERT_EQ(SQLITE_OK, Run(1, "UPDATE acct SET v = 5 WHERE id = 3"));
  ASSERT_EQ(XA_OK, SqEnd(x, 1));
  ASSERT_EQ(XA_OK, SqCommit(x, 1, TMONEPHASE)) << xatm_sqlite_errmsg(1);
  EXPECT_EQ("5", V(3));
  EXPECT_TRUE(SqRecoverAll(1).empty());
}

// A last resource's decision row is the RM's own: the branch's change
// capture does not record it, so a branch that wrote nothing else is still
// a reader.
TEST_F(SqliteRmTest, TheDecisionRowOfALastResourceIsNotTheBranchsWork) {
  XID x = SqXid("g-row");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  ASSERT_EQ("", sqlite::WriteDecisionRow(1, "gtrid-a", 1, {}));
  EXPECT_FALSE(sqlite::BranchHasWrites(1));
  ASSERT_EQ(SQLITE_OK, Run(1, "UPDATE acct SET v = 7 WHERE id = 2"));
  EXPECT_TRUE(sqlite::BranchHasWrites(1));
  ASSERT_EQ("", sqlite::WriteDecisionRow(1, "gtrid-b", 1, {"gtrid-a"}));
  ASSERT_EQ(XA_OK, SqEnd(x, 1));
  ASSERT_EQ(XA_OK, SqCommit(x, 1, TMONEPHASE)) << xatm_sqlite_errmsg(1);
  EXPECT_EQ("7", V(2));
  EXPECT_EQ("gtrid-b", Plain(path_).One("SELECT group_concat(CAST(gtrid AS TEXT)) FROM xatm_decision"));
}

// The TM's xids are new by construction, so its handles begin a branch
// without looking for a prepared record with the xid. Were a duplicate to
// slip through, it could not prepare, and the prepared branch that holds the
// xid stays as it was and still commits.
TEST_F(SqliteRmTest, ATrustedHandleSkipsTheDuplicateCheckAndADuplicateCannotPrepare) {
  XID x = SqXid("g-trusted-dup");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 90 WHERE id = 1")) << xatm_sqlite_errmsg(1);
  ASSERT_EQ(XA_OK, SqClose(1));  // the record outlives the handle
  ASSERT_EQ(XA_OK, SqOpen(2, Info())) << xatm_sqlite_errmsg(2);
  EXPECT_EQ(XAER_DUPID, SqStart(x, 2));
  ASSERT_TRUE(sqlite::TrustFreshXids(2));
  ASSERT_EQ(XA_OK, SqStart(x, 2)) << xatm_sqlite_errmsg(2);
  ASSERT_EQ(SQLITE_OK, Run(2, "UPDATE acct SET v = 7 WHERE id = 2"));
  ASSERT_EQ(XA_OK, SqEnd(x, 2));
  EXPECT_EQ(XA_RBOTHER, SqPrepare(x, 2));
  EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(2)).find("cannot write the prepared record"))
      << xatm_sqlite_errmsg(2);
  EXPECT_EQ("100", V(2));
  ASSERT_EQ(1u, SqRecoverAll(2).size());
  ASSERT_EQ(XA_OK, SqCommit(x, 2)) << xatm_sqlite_errmsg(2);
  EXPECT_EQ("90", V(1));
  EXPECT_EQ("100", V(2));
  EXPECT_TRUE(SqRecoverAll(2).empty());
}

TEST_F(SqliteRmTest, StateTableWrongSequences) {
  XID x = SqXid("g-proto"), other = SqXid("g-other");
  EXPECT_EQ(XAER_NOTA, SqEnd(x, 1));
  EXPECT_EQ(XAER_NOTA, SqPrepare(x, 1));
  EXPECT_EQ(XAER_NOTA, SqCommit(x, 1));
  EXPECT_EQ(XAER_NOTA, SqRollback(x, 1));
  EXPECT_EQ(XAER_NOTA, SqStart(x, 1, TMJOIN));
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  EXPECT_EQ(XAER_DUPID, SqStart(x, 1));
  EXPECT_EQ(XAER_PROTO, SqStart(other, 1));
  EXPECT_EQ(XAER_PROTO, SqPrepare(x, 1));
  EXPECT_EQ(XAER_PROTO, SqCommit(x, 1, TMONEPHASE));
  EXPECT_EQ(XAER_PROTO, SqRollback(x, 1));
  EXPECT_EQ(XAER_PROTO, SqClose(1));
  EXPECT_EQ(XA_OK, SqEnd(x, 1, TMSUSPEND));
  EXPECT_EQ(XA_OK, SqStart(x, 1, TMRESUME));
  ASSERT_EQ(SQLITE_OK, Run(1, "UPDATE acct SET v = 7 WHERE id = 1"));
  EXPECT_EQ(XA_OK, SqEnd(x, 1));
  EXPECT_EQ(XA_OK, SqStart(x, 1, TMJOIN));
  EXPECT_EQ(XA_OK, SqEnd(x, 1));
  EXPECT_EQ(XAER_PROTO, SqEnd(x, 1));
  EXPECT_EQ(XAER_RMERR, SqStart(other, 1));
  EXPECT_EQ(XAER_PROTO, SqCommit(x, 1));
  ASSERT_EQ(XA_OK, SqPrepare(x, 1));
  EXPECT_EQ(XAER_PROTO, SqPrepare(x, 1));
  EXPECT_EQ(XAER_PROTO, SqCommit(x, 1, TMONEPHASE));
  EXPECT_EQ(XAER_NOTA, SqStart(x, 1, TMJOIN));
  EXPECT_EQ(XAER_PROTO, SqForget(x, 1));
  ASSERT_EQ(XA_OK, SqCommit(x, 1));
  EXPECT_EQ(XAER_NOTA, SqCommit(x, 1));
  EXPECT_EQ(XAER_NOTA, SqForget(x, 1));
  EXPECT_EQ("7", V(1));
  // Arguments.
  EXPECT_EQ(XAER_ASYNC, SqStart(x, 1, TMASYNC));
  EXPECT_EQ(XAER_INVAL, ssw().xa_start_entry(nullptr, 1, TMNOFLAGS));
  EXPECT_EQ(XAER_PROTO, SqStart(x, 55));
  XID buf[2];
  EXPECT_EQ(XAER_INVAL, ssw().xa_recover_entry(buf, 2, 1, TMNOFLAGS));
  EXPECT_STREQ("xatm_sqlite", ssw().name);
}

TEST_F(SqliteRmTest, XaInfoOptionsAreChecked) {
  EXPECT_EQ(XAER_INVAL, SqOpen(20, "busy_timeout_ms=10"));
  EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(20)).find("path=FILE"));
  EXPECT_EQ(XAER_INVAL, SqOpen(21, "path=" + path_ + " colour=blue"));
  EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(21)).find("unknown option \"colour\""));
  EXPECT_EQ(XAER_INVAL, SqOpen(22, "path=" + path_ + " busy_timeout_ms=soon"));
  EXPECT_EQ(XAER_RMERR, SqOpen(23, "path=/nonexistent-dir/x.db"));
  EXPECT_EQ(XA_OK, SqOpen(24, "path=" + path_ + " busy_timeout_ms=10"));
  SqClose(24);
}

// A missing database is an error naming the path, never a new empty file
// (in which "no decision row" would look like a decision to roll back).
TEST_F(SqliteRmTest, MissingDatabaseIsAnErrorNamingThePathAndIsNotCreated) {
  const std::string missing = dir_ / "no-such.db";
  EXPECT_EQ(XAER_RMERR, SqOpen(25, "path=" + missing));
  const std::string why = xatm_sqlite_errmsg(25);
  EXPECT_NE(std::string::npos, why.find(missing + " does not exist")) << why;
  EXPECT_NE(std::string::npos, why.find("never creates")) << why;
  EXPECT_FALSE(std::filesystem::exists(missing));
  EXPECT_FALSE(std::filesystem::exists(sqlite::SidecarPath(missing)));
  // The decision rows of a missing file are unknown, not "none".
  std::set<std::string> rows;
  std::string w;
  EXPECT_EQ(-1, sqlite::ReadDecisionRows(missing, 100, /*locked=*/true, nullptr, &rows, &w));
  EXPECT_NE(std::string::npos, w.find("does not exist")) << w;
  EXPECT_FALSE(std::filesystem::exists(missing));
}

// What the TM commits on the handle must be durable when COMMIT returns:
// settings that would let a commit or a checkpoint skip its sync are refused
// (OFF), or raised for the RM's branches (NORMAL).
TEST_F(SqliteRmTest, PragmasThatWouldMakeCommitsNonDurableAreRefusedOrRaised) {
  sqlite3* db = xatm_sqlite_db(1);
  EXPECT_EQ(SQLITE_AUTH, Run(1, "PRAGMA synchronous = OFF"));
  EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(1)).find("synchronous = OFF")) << xatm_sqlite_errmsg(1);
  EXPECT_EQ(SQLITE_AUTH, Run(1, "PRAGMA main.synchronous = 0"));
  EXPECT_EQ(SQLITE_AUTH, Run(1, "PRAGMA synchronous = false"));
  EXPECT_EQ(SQLITE_AUTH, Run(1, "PRAGMA journal_mode = MEMORY"));
  EXPECT_EQ(SQLITE_AUTH, Run(1, "PRAGMA journal_mode = off"));
  EXPECT_EQ(SQLITE_OK, Run(1, "PRAGMA synchronous = NORMAL"));
  EXPECT_EQ("1", Plain::OneOn(db, "PRAGMA synchronous"));
  // A branch runs with FULL.
  XID x = SqXid("g-sync");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  EXPECT_EQ("2", Plain::OneOn(db, "PRAGMA synchronous"));
  ASSERT_EQ(XA_OK, SqEnd(x, 1));
  ASSERT_EQ(XA_OK, SqRollback(x, 1));
}

TEST_F(SqliteRmTest, ReadOnlyOpenWritesNothingAndOnlyRecovers) {
  TempDir d;
  const std::string p = d / "untouched.db";
  ASSERT_EQ(SQLITE_OK, Plain(p).Run("CREATE TABLE t (id INTEGER PRIMARY KEY)"));
  ASSERT_EQ(XA_OK, SqOpen(2, "path=" + p + " readonly=1")) << xatm_sqlite_errmsg(2);
  EXPECT_TRUE(SqRecoverAll(2).empty());
  EXPECT_EQ(XAER_RMERR, SqStart(SqXid("ro"), 2));
  SqClose(2);
  EXPECT_EQ("0", Plain(p).One("SELECT count(*) FROM sqlite_schema WHERE name LIKE 'xatm%'"));
  EXPECT_FALSE(std::filesystem::exists(sqlite::SidecarPath(p)));
  // And on a database with a prepared branch, it is listed.
  XID x = SqXid("listed");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 5 WHERE id = 1")) << xatm_sqlite_errmsg(1);
  ASSERT_EQ(XA_OK, SqOpen(3, "path=" + path_ + " readonly=1"));
  EXPECT_EQ(1u, SqRecoverAll(3).size());
  SqClose(3);
  ASSERT_EQ(XA_OK, SqCommit(x, 1));
}

TEST_F(SqliteRmTest, RollbackJournalModeWorksAndOpenSaysWalIsRecommended) {
  TempDir d;
  const std::string p = d / "journal.db";
  {
    Plain c(p);
    ASSERT_EQ(SQLITE_OK, c.Run("PRAGMA journal_mode = DELETE; CREATE TABLE t (id INTEGER PRIMARY KEY, v);"
                               "INSERT INTO t VALUES (1, 'x')"));
  }
  ASSERT_EQ(XA_OK, SqOpen(2, "path=" + p));
  EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(2)).find("WAL is recommended"));
  XID x = SqXid("journal");
  ASSERT_EQ(XA_OK, SqStart(x, 2));
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(xatm_sqlite_db(2), "UPDATE t SET v = 'y'", nullptr, nullptr, nullptr));
  ASSERT_EQ(XA_OK, SqEnd(x, 2));
  ASSERT_EQ(XA_OK, SqPrepare(x, 2));
  ASSERT_EQ(XA_OK, SqCommit(x, 2)) << xatm_sqlite_errmsg(2);
  EXPECT_EQ("y", Plain(p).One("SELECT v FROM t"));
  EXPECT_EQ("delete", Plain(p).One("PRAGMA journal_mode"));  // the RM left the mode alone
}

TEST_F(SqliteRmTest, WhatAChangesetCannotCarryIsRefusedAtTheStatement) {
  Plain setup(path_);
  ASSERT_EQ(SQLITE_OK, setup.Run("CREATE TABLE nopk (a, b); CREATE VIRTUAL TABLE ft USING fts5(body);"));
  XID x = SqXid("refused");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  struct Case {
    const char* sql;
    const char* says;
  } cases[] = {
      {"CREATE TABLE made_in_branch (id INTEGER PRIMARY KEY)", "DDL"},
      {"ALTER TABLE acct ADD COLUMN z", "DDL"},
      {"DROP TABLE acct", "DDL"},
      {"CREATE INDEX i ON acct(v)", "DDL"},
      {"INSERT INTO nopk VALUES (1, 2)", "nopk"},
      {"INSERT INTO ft VALUES ('hello')", "virtual table ft"},
      {"ATTACH ':memory:' AS other", "ATTACH"},
      {"CREATE TEMP TABLE tmp (id INTEGER PRIMARY KEY)", "DDL"},
      {"COMMIT", "COMMIT"},
      {"ROLLBACK", "ROLLBACK"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.sql);
    EXPECT_EQ(SQLITE_AUTH, Run(1, c.sql));
    EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(1)).find(c.says)) << xatm_sqlite_errmsg(1);
  }
  // The branch itself is intact and still commits.
  ASSERT_EQ(SQLITE_OK, Run(1, "UPDATE acct SET v = 1 WHERE id = 1"));
  ASSERT_EQ(XA_OK, SqEnd(x, 1));
  ASSERT_EQ(XA_OK, SqPrepare(x, 1));
  ASSERT_EQ(XA_OK, SqCommit(x, 1));
  EXPECT_EQ("1", V(1));
  // Outside a branch the application may do as it likes.
  EXPECT_EQ(SQLITE_OK, Run(1, "INSERT INTO nopk VALUES (1, 2)"));
}

TEST_F(SqliteRmTest, StatementsPreparedBeforeTheBranchAreJudgedAgain) {
  Plain setup(path_);
  ASSERT_EQ(SQLITE_OK, setup.Run("CREATE TABLE nopk2 (a, b)"));
  sqlite3* h = xatm_sqlite_db(1);
  sqlite3_stmt* ins = nullptr;
  sqlite3_stmt* commit = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(h, "INSERT INTO nopk2 VALUES (1, 2)", -1, &ins, nullptr));
  ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(h, "COMMIT", -1, &commit, nullptr));
  XID x = SqXid("stale");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  EXPECT_EQ(SQLITE_AUTH, sqlite3_step(ins));  // judged again under the branch's rules
  ASSERT_EQ(SQLITE_OK, Run(1, "UPDATE acct SET v = 0 WHERE id = 1"));
  EXPECT_EQ(SQLITE_AUTH, sqlite3_step(commit));  // COMMIT inside the branch is refused
  sqlite3_finalize(ins);
  sqlite3_finalize(commit);
  EXPECT_EQ("100", V(1));  // nothing committed behind the TM's back
  ASSERT_EQ(XA_OK, SqEnd(x, 1));
  ASSERT_EQ(XA_OK, SqPrepare(x, 1));
  ASSERT_EQ(XA_OK, SqCommit(x, 1)) << xatm_sqlite_errmsg(1);
  EXPECT_EQ("0", V(1));
  EXPECT_EQ("0", Plain(path_).One("SELECT count(*) FROM nopk2"));
}

TEST_F(SqliteRmTest, CommitHookTurnsAStaleCommitIntoARollbackVote) {
  sqlite3* h = xatm_sqlite_db(1);
  XID x = SqXid("stale-commit");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  ASSERT_EQ(SQLITE_OK, Run(1, "UPDATE acct SET v = 0 WHERE id = 2"));
  // Bypass the authorizer as a statement judged earlier would: the commit
  // hook still refuses to let the branch commit outside the protocol.
  sqlite3_set_authorizer(h, nullptr, nullptr);
  EXPECT_NE(SQLITE_OK, Run(1, "COMMIT"));
  EXPECT_EQ("100", V(2));
  int rc = SqEnd(x, 1);
  EXPECT_GE(rc, XA_RBBASE);
  EXPECT_LE(rc, XA_RBEND);
  SqClose(1);  // reinstalls the guards on the next open
  ASSERT_EQ(XA_OK, SqOpen(1, Info()));
}

TEST_F(SqliteRmTest, WritesToTempTablesAreRefused) {
  ASSERT_EQ(SQLITE_OK, Run(1, "CREATE TEMP TABLE scratch (id INTEGER PRIMARY KEY)"));
  XID x = SqXid("temp");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  EXPECT_EQ(SQLITE_AUTH, Run(1, "INSERT INTO scratch VALUES (1)"));
  EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(1)).find("temp.scratch"));
  ASSERT_EQ(XA_OK, SqEnd(x, 1));
  EXPECT_EQ(XA_RDONLY, SqPrepare(x, 1));
}

TEST_F(SqliteRmTest, RowWithNullKeyIsRefusedAtPrepareNamingTheTable) {
  Plain setup(path_);
  ASSERT_EQ(SQLITE_OK, setup.Run("CREATE TABLE loose (k TEXT PRIMARY KEY, v)"));
  XID x = SqXid("nullkey");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  ASSERT_EQ(SQLITE_OK, Run(1, "INSERT INTO loose VALUES (NULL, 1)"));  // SQLite allows it
  ASSERT_EQ(XA_OK, SqEnd(x, 1));
  EXPECT_EQ(XA_RBINTEGRITY, SqPrepare(x, 1));
  EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(1)).find("loose"));
  EXPECT_EQ("0", Plain(path_).One("SELECT count(*) FROM loose"));
}

TEST_F(SqliteRmTest, WritesOnTheHandleAfterPrepareAreRefused) {
  XID x = SqXid("after-prepare");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 2 WHERE id = 2")) << xatm_sqlite_errmsg(1);
  EXPECT_EQ(SQLITE_AUTH, Run(1, "UPDATE acct SET v = 999 WHERE id = 3"));
  EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(1)).find("prepared"));
  ASSERT_EQ(XA_OK, SqCommit(x, 1));
  EXPECT_EQ("2", V(2));
  EXPECT_EQ("100", V(3));
}

TEST_F(SqliteRmTest, DeferredForeignKeyViolationIsRefusedAtPrepare) {
  Plain setup(path_);
  ASSERT_EQ(SQLITE_OK, setup.Run("CREATE TABLE parent (id INTEGER PRIMARY KEY);"
                                 "CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id) "
                                 "DEFERRABLE INITIALLY DEFERRED)"));
  ASSERT_EQ(SQLITE_OK, Run(1, "PRAGMA foreign_keys = ON"));
  XID x = SqXid("fk");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  ASSERT_EQ(SQLITE_OK, Run(1, "INSERT INTO child VALUES (1, 42)"));
  ASSERT_EQ(XA_OK, SqEnd(x, 1));
  EXPECT_EQ(XA_RBINTEGRITY, SqPrepare(x, 1));
  EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(1)).find("foreign key"));
  EXPECT_TRUE(SqRecoverAll(1).empty());
  EXPECT_EQ("0", Plain(path_).One("SELECT count(*) FROM child"));
}

TEST_F(SqliteRmTest, TmFailRollsBackAtOnce) {
  XID x = SqXid("tmfail");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  ASSERT_EQ(SQLITE_OK, Run(1, "UPDATE acct SET v = 0"));
  EXPECT_EQ(XA_RBROLLBACK, SqEnd(x, 1, TMFAIL));
  Plain other(path_, 0);
  EXPECT_EQ(SQLITE_OK, other.Run("UPDATE acct SET v = v WHERE id = 1"));  // no lock left
  EXPECT_EQ(XA_RBROLLBACK, SqPrepare(x, 1));
  EXPECT_EQ("100", V(1));
}

TEST_F(SqliteRmTest, ThreadsEachWithTheirOwnBranchSerialize) {
  constexpr int kThreads = 6, kEach = 15;
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      if (SqOpen(1, "path=" + path_ + " busy_timeout_ms=20000") != XA_OK) {
        failures++;
        return;
      }
      for (int i = 0; i < kEach; ++i) {
        XID x = SqXid("thr-" + std::to_string(t) + "-" + std::to_string(i));
        bool ok = SqStart(x, 1) == XA_OK &&
                  sqlite3_exec(xatm_sqlite_db(1), "UPDATE acct SET v = v + 1 WHERE id = 1", nullptr,
                               nullptr, nullptr) == SQLITE_OK &&
                  SqEnd(x, 1) == XA_OK && SqPrepare(x, 1) == XA_OK && SqCommit(x, 1) == XA_OK;
        if (!ok) failures++;
      }
      SqClose(1);
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_EQ(0, failures.load());
  EXPECT_EQ(std::to_string(100 + kThreads * kEach), V(1));
  EXPECT_TRUE(SqRecoverAll(1).empty());
}

TEST_F(SqliteRmTest, CommitMarkersAreCollectedOnceTheirRecordsAreGone) {
  for (int i = 0; i < 20; ++i) {
    XID x = SqXid("marker-" + std::to_string(i));
    ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = v + 1 WHERE id = 2")) << xatm_sqlite_errmsg(1);
    ASSERT_EQ(XA_OK, SqCommit(x, 1));
  }
  EXPECT_EQ("20", Plain(path_).One("SELECT count(*) FROM xatm_marker"));
  SqClose(1);
  ASSERT_EQ(XA_OK, SqOpen(1, Info()));
  EXPECT_EQ("0", Plain(path_).One("SELECT count(*) FROM xatm_marker"));
  EXPECT_EQ("120", V(2));
}

TEST_F(SqliteRmTest, PreparedBranchOutlivesItsHandleAndIsCommittedByReplay) {
  XID x = SqXid("outlives");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 55, note = NULL WHERE id = 3")) << xatm_sqlite_errmsg(1);
  ASSERT_EQ(XA_OK, SqClose(1));  // the transaction rolls back with the connection
  EXPECT_EQ("100", V(3));
  ASSERT_EQ(XA_OK, SqOpen(1, Info()));
  ASSERT_EQ(1u, SqRecoverAll(1).size());
  ASSERT_EQ(XA_OK, SqCommit(x, 1)) << xatm_sqlite_errmsg(1);
  EXPECT_EQ("55", V(3));
  EXPECT_EQ("NULL", Plain(path_).One("SELECT coalesce(note, 'NULL') FROM acct WHERE id = 3"));
  EXPECT_EQ(XAER_NOTA, SqCommit(x, 1));
}

// A new sidecar has 1 KiB pages (each prepare writes and syncs one page of
// it, not four); a record larger than a page spills into overflow pages and
// replays whole; a sidecar made with larger pages keeps them and serves alike.
TEST_F(SqliteRmTest, TheSidecarHasSmallPagesAndReplaysRecordsLargerThanOne) {
  const std::string side = path_ + "-xatm";
  EXPECT_EQ("1024", Plain(side).One("PRAGMA page_size"));
  auto replay_a_large_branch = [&](const std::string& name, int id) {
    XID x = SqXid(name);
    const std::string note = std::string(20000, static_cast<char>('a' + id));
    ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 7, note = '" + note + "' WHERE id = " + std::to_string(id)))
        << xatm_sqlite_errmsg(1);
    ASSERT_EQ(XA_OK, SqClose(1));  // the transaction rolls back with the connection
    EXPECT_EQ("100", V(id));
    ASSERT_EQ(XA_OK, SqOpen(1, Info()));
    ASSERT_EQ(1u, SqRecoverAll(1).size());
    ASSERT_EQ(XA_OK, SqCommit(x, 1)) << xatm_sqlite_errmsg(1);
    EXPECT_EQ("7", V(id));
    EXPECT_EQ(note, Plain(path_).One("SELECT note FROM acct WHERE id = " + std::to_string(id)));
  };
  replay_a_large_branch("large-1k", 1);

  // A sidecar made by a build that used SQLite's default page size.
  ASSERT_EQ(XA_OK, SqClose(1));
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(side + suffix);
  ASSERT_EQ(SQLITE_OK, Plain(side).Run("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x)"));
  ASSERT_EQ(XA_OK, SqOpen(1, Info())) << xatm_sqlite_errmsg(1);
  EXPECT_EQ("4096", Plain(side).One("PRAGMA page_size"));
  replay_a_large_branch("large-4k", 2);
}

TEST_F(SqliteRmTest, OutsideEditOfAnUntouchedColumnIsAHeuristicHazardNotAnOverwrite) {
  XID x = SqXid("outside-edit");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 1 WHERE id = 1")) << xatm_sqlite_errmsg(1);  // only v
  ASSERT_EQ(XA_OK, SqClose(1));
  // Someone edits the note of the prepared row while the branch is in doubt.
  ASSERT_EQ(SQLITE_OK, Plain(path_).Run("UPDATE acct SET note = 'edited' WHERE id = 1"));
  ASSERT_EQ(XA_OK, SqOpen(1, Info()));
  EXPECT_EQ(XA_HEURHAZ, SqCommit(x, 1));
  std::string e = xatm_sqlite_errmsg(1);
  EXPECT_NE(std::string::npos, e.find("acct")) << e;
  EXPECT_NE(std::string::npos, e.find("(1)")) << e;
  EXPECT_EQ("100", V(1));  // nothing applied
  ASSERT_EQ(1u, SqRecoverAll(1).size());  // still visible to recovery
  // Put the row back as it was: the commit goes through.
  ASSERT_EQ(SQLITE_OK, Plain(path_).Run("UPDATE acct SET note = 'a' WHERE id = 1"));
  EXPECT_EQ(XA_OK, SqCommit(x, 1)) << xatm_sqlite_errmsg(1);
  EXPECT_EQ("1", V(1));
}

TEST_F(SqliteRmTest, HazardousBranchIsForgottenOnlyAfterAHeuristicOutcome) {
  XID x = SqXid("forget");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "DELETE FROM acct WHERE id = 2")) << xatm_sqlite_errmsg(1);
  ASSERT_EQ(XA_OK, SqClose(1));
  ASSERT_EQ(XA_OK, SqOpen(1, Info()));
  EXPECT_EQ(XAER_PROTO, SqForget(x, 1));  // prepared, not heuristic
  ASSERT_EQ(SQLITE_OK, Plain(path_).Run("UPDATE acct SET v = 3 WHERE id = 2"));
  EXPECT_EQ(XA_HEURHAZ, SqCommit(x, 1));
  EXPECT_EQ(XA_OK, SqForget(x, 1));
  EXPECT_TRUE(SqRecoverAll(1).empty());
  EXPECT_EQ("3", V(2));
}

TEST_F(SqliteRmTest, SchemaChangeSincePrepareIsAHazard) {
  XID x = SqXid("schema");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 9 WHERE id = 3")) << xatm_sqlite_errmsg(1);
  ASSERT_EQ(XA_OK, SqClose(1));
  ASSERT_EQ(SQLITE_OK, Plain(path_).Run("ALTER TABLE acct ADD COLUMN extra"));
  ASSERT_EQ(XA_OK, SqOpen(1, Info()));
  EXPECT_EQ(XA_HEURHAZ, SqCommit(x, 1));
  EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(1)).find("schema"));
  EXPECT_EQ("100", V(3));
}

TEST_F(SqliteRmTest, ReplacedDatabaseFileNeverReceivesAnOldBranch) {
  XID x = SqXid("replaced");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 1 WHERE id = 1")) << xatm_sqlite_errmsg(1);
  ASSERT_EQ(XA_OK, SqClose(1));
  std::filesystem::remove(path_);
  std::filesystem::remove(path_ + "-wal");
  std::filesystem::remove(path_ + "-shm");
  ASSERT_EQ(SQLITE_OK, Plain(path_).Run("CREATE TABLE acct (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, note TEXT);"
                                        "INSERT INTO acct VALUES (1, 100, 'a')"));
  ASSERT_EQ(XA_OK, SqOpen(1, Info()));
  EXPECT_EQ(XA_HEURHAZ, SqCommit(x, 1));
  EXPECT_NE(std::string::npos, std::string(xatm_sqlite_errmsg(1)).find("replaced"));
  EXPECT_EQ("100", V(1));
}

TEST_F(SqliteRmTest, ReplayDoesNotFireTriggersOrForeignKeyActionsAgain) {
  Plain setup(path_);
  ASSERT_EQ(SQLITE_OK, setup.Run(
      "CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT);"
      "CREATE TRIGGER acct_audit AFTER UPDATE ON acct BEGIN INSERT INTO audit (what) VALUES ('v=' || new.v); END;"
      "CREATE TABLE owner (id INTEGER PRIMARY KEY);"
      "CREATE TABLE pet (id INTEGER PRIMARY KEY, owner INTEGER REFERENCES owner(id) ON DELETE CASCADE);"
      "INSERT INTO owner VALUES (1); INSERT INTO pet VALUES (1, 1), (2, 1);"));
  ASSERT_EQ(SQLITE_OK, Run(1, "PRAGMA foreign_keys = ON"));
  XID x = SqXid("triggers");
  ASSERT_EQ(XA_OK, SqStart(x, 1));
  ASSERT_EQ(SQLITE_OK, Run(1, "UPDATE acct SET v = 11 WHERE id = 1"));
  ASSERT_EQ(SQLITE_OK, Run(1, "DELETE FROM owner WHERE id = 1"));
  ASSERT_EQ(XA_OK, SqEnd(x, 1));
  ASSERT_EQ(XA_OK, SqPrepare(x, 1));
  ASSERT_EQ(XA_OK, SqClose(1));
  ASSERT_EQ(XA_OK, SqOpen(1, Info()));
  ASSERT_EQ(SQLITE_OK, Run(1, "PRAGMA foreign_keys = ON"));
  ASSERT_EQ(XA_OK, SqCommit(x, 1)) << xatm_sqlite_errmsg(1);
  Plain p(path_);
  EXPECT_EQ("1", p.One("SELECT count(*) FROM audit"));  // once, from the changeset
  EXPECT_EQ("v=11", p.One("SELECT what FROM audit"));
  EXPECT_EQ("0", p.One("SELECT count(*) FROM pet"));
  EXPECT_EQ("11", V(1));
  // The handle's own settings were restored.
  EXPECT_EQ("1", Plain::OneOn(xatm_sqlite_db(1), "PRAGMA foreign_keys"));
}

// Random mixes of statements run through the RM (prepare, close, replay)
// must leave exactly what the same statements leave without it.
TEST(SqliteRmFuzz, RandomBranchesReplayExactlyAsPlainTransactions) {
  std::mt19937 rng(20261122);
  for (int round = 0; round < 25; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    TempDir d;
    const std::string a = d / "a.db", b = d / "b.db";
    const char* schema =
        "PRAGMA journal_mode = WAL;"
        "CREATE TABLE t1 (id INTEGER PRIMARY KEY, s TEXT, n REAL, bl BLOB);"
        "CREATE TABLE t2 (k1 TEXT NOT NULL, k2 INTEGER NOT NULL, v, PRIMARY KEY (k1, k2)) WITHOUT ROWID;";
    std::vector<std::string> stmts;
    for (int i = 0; i < 30; ++i) {
      int id = static_cast<int>(rng() % 20), k = static_cast<int>(rng() % 5);
      switch (rng() % 6) {
        case 0: stmts.push_back("INSERT OR REPLACE INTO t1 VALUES (" + std::to_string(id) + ", 's" + std::to_string(rng() % 100) + "', " + std::to_string((rng() % 1000) / 7.0) + ", x'" + (rng() % 2 ? "00ff10" : "") + "')"); break;
        case 1: stmts.push_back("UPDATE t1 SET s = NULL, n = n + 1 WHERE id % 3 = " + std::to_string(id % 3)); break;
        case 2: stmts.push_back("DELETE FROM t1 WHERE id = " + std::to_string(id)); break;
        case 3: stmts.push_back("INSERT OR REPLACE INTO t2 VALUES ('k" + std::to_string(k) + "', " + std::to_string(id) + ", " + (rng() % 2 ? "NULL" : "zeroblob(3)") + ")"); break;
        case 4: stmts.push_back("UPDATE t2 SET k2 = k2 + 100 WHERE k1 = 'k" + std::to_string(k) + "' AND k2 < 100"); break;
        default: stmts.push_back("DELETE FROM t2 WHERE k2 % 4 = " + std::to_string(id % 4)); break;
      }
    }
    for (const std::string& p : {a, b}) ASSERT_EQ(SQLITE_OK, Plain(p).Run(std::string(schema) +
        "INSERT INTO t1 VALUES (1, 'one', 1.5, x'01'), (2, NULL, NULL, NULL);"
        "INSERT INTO t2 VALUES ('k1', 1, 'x'), ('k2', 2, NULL);"));
    {
      Plain plain(b);
      plain.Run("BEGIN");
      for (const std::string& s : stmts) plain.Run(s);
      plain.Run("COMMIT");
    }
    ASSERT_EQ(XA_OK, SqOpen(5, "path=" + a));
    XID x = SqXid("fuzz-" + std::to_string(round));
    ASSERT_EQ(XA_OK, SqStart(x, 5));
    for (const std::string& s : stmts) sqlite3_exec(xatm_sqlite_db(5), s.c_str(), nullptr, nullptr, nullptr);
    ASSERT_EQ(XA_OK, SqEnd(x, 5));
    int rc = SqPrepare(x, 5);
    ASSERT_TRUE(rc == XA_OK || rc == XA_RDONLY) << rc << " " << xatm_sqlite_errmsg(5);
    ASSERT_EQ(XA_OK, SqClose(5));  // drops the open transaction: replay must rebuild it
    ASSERT_EQ(XA_OK, SqOpen(5, "path=" + a));
    if (rc == XA_OK) {
      ASSERT_EQ(XA_OK, SqCommit(x, 5)) << xatm_sqlite_errmsg(5);
    }
    SqClose(5);
    EXPECT_EQ(DumpFile(b), DumpFile(a));
  }
}

// Disk full, with a real full file system: a small tmpfs (root only).
class SqliteDiskFull : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root";
    mnt_ = dir_ / "small";
    std::filesystem::create_directory(mnt_);
    ASSERT_EQ(0, ::mount("tmpfs", mnt_.c_str(), "tmpfs", 0, "size=2m")) << std::strerror(errno);
    mounted_ = true;
  }
  void TearDown() override {
    SqClose(7);
    if (mounted_) ::umount2(mnt_.c_str(), MNT_DETACH);
  }
  // Fills the file system but for `leave` bytes.
  void Fill(size_t leave) {
    std::string filler = mnt_ + "/filler";
    FILE* f = std::fopen(filler.c_str(), "w");
    std::string chunk(4096, 'x');
    while (std::fwrite(chunk.data(), 1, chunk.size(), f) == chunk.size()) {
    }
    std::fclose(f);
    std::filesystem::resize_file(filler, std::filesystem::file_size(filler) - leave);
  }
  TempDir dir_;
  std::string mnt_;
  bool mounted_ = false;
};

TEST_F(SqliteDiskFull, FullDiskAtPrepareIsARollbackVoteAndLeavesNothing) {
  const std::string p = mnt_ + "/full.db";
  ASSERT_EQ(SQLITE_OK, Plain(p).Run("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB);"
                                    "INSERT INTO t VALUES (1, zeroblob(10))"));
  ASSERT_EQ(XA_OK, SqOpen(7, "path=" + p));
  Fill(64 << 10);
  XID x = SqXid("full-prepare");
  ASSERT_EQ(XA_OK, SqStart(x, 7));
  // A branch that fits in memory but whose changeset cannot reach the disk.
  int rc = sqlite3_exec(xatm_sqlite_db(7), "UPDATE t SET b = randomblob(300000) WHERE id = 1", nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK) {
    ASSERT_EQ(XA_OK, SqEnd(x, 7));
    rc = SqPrepare(x, 7);
    EXPECT_GE(rc, XA_RBBASE) << xatm_sqlite_errmsg(7);
    EXPECT_LE(rc, XA_RBEND);
  } else {
    // SQLite itself hit the full disk in the statement: the branch must fail.
    EXPECT_NE(XA_OK, SqEnd(x, 7) == XA_OK ? SqPrepare(x, 7) : XA_RBOTHER);
  }
  EXPECT_TRUE(SqRecoverAll(7).empty());
  std::filesystem::remove(mnt_ + "/filler");
  EXPECT_EQ("10", Plain(p).One("SELECT length(b) FROM t WHERE id = 1"));
}

TEST_F(SqliteDiskFull, FullDiskAtCommitFallsBackToReplayUntilItSucceeds) {
  const std::string p = mnt_ + "/full.db";
  ASSERT_EQ(SQLITE_OK, Plain(p).Run("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB);"
                                    "INSERT INTO t VALUES (1, zeroblob(10))"));
  ASSERT_EQ(XA_OK, SqOpen(7, "path=" + p));
  sqlite3* h = xatm_sqlite_db(7);
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(h, "PRAGMA cache_size = -65536", nullptr, nullptr, nullptr));
  XID x = SqXid("full-commit");
  ASSERT_EQ(XA_OK, SqStart(x, 7));
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(h, "UPDATE t SET b = randomblob(250000) WHERE id = 1", nullptr, nullptr, nullptr));
  ASSERT_EQ(XA_OK, SqEnd(x, 7));
  ASSERT_EQ(XA_OK, SqPrepare(x, 7)) << xatm_sqlite_errmsg(7);
  const std::string want = Plain::OneOn(h, "SELECT hex(b) FROM t WHERE id = 1");
  Fill(8 << 10);
  // COMMIT cannot write its WAL frames: SQLite rolls the transaction back,
  // and the branch lives on in its sidecar record.
  EXPECT_EQ(XAER_RMFAIL, SqCommit(x, 7)) << xatm_sqlite_errmsg(7);
  EXPECT_EQ(1u, SqRecoverAll(7).size());
  EXPECT_EQ(XAER_RMFAIL, SqCommit(x, 7));  // still full: still retrying
  std::filesystem::remove(mnt_ + "/filler");
  EXPECT_EQ(XA_OK, SqCommit(x, 7)) << xatm_sqlite_errmsg(7);
  EXPECT_EQ(want, Plain(p).One("SELECT hex(b) FROM t WHERE id = 1"));
  EXPECT_TRUE(SqRecoverAll(7).empty());
}

}  // namespace
}  // namespace xtm::test
