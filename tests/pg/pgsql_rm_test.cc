// The PostgreSQL resource manager against a real server: the XA state
// tables, gid encoding, votes, recovery, and the pitfalls of PostgreSQL's
// two-phase commit (../shared/PITFALLS.md 1-12).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include "common/xid_util.h"
#include "pgsql/gid.h"
#include "pgsql/pgsql_rm.h"
#include "support/fork_child.h"
#include "support/pg_cluster.h"
#include "support/pg_proxy.h"
#include "xatm/rm_pgsql.h"

namespace xtm::test {
namespace {

xa_switch_t& sw = xatm_pgsql_switch;

XID MakeXid(const std::string& gtrid, const std::string& bqual, long fmt = 0x78617463) {
  XID x;
  EXPECT_TRUE(rm::MakeXid(fmt, gtrid, bqual, &x));
  return x;
}

int Open(int rmid, const std::string& conninfo) {
  return sw.xa_open_entry(const_cast<char*>(conninfo.c_str()), rmid, TMNOFLAGS);
}
int Close(int rmid) { return sw.xa_close_entry(const_cast<char*>(""), rmid, TMNOFLAGS); }
int Start(XID x, int rmid, long f = TMNOFLAGS) { return sw.xa_start_entry(&x, rmid, f); }
int End(XID x, int rmid, long f = TMSUCCESS) { return sw.xa_end_entry(&x, rmid, f); }
int Prepare(XID x, int rmid) { return sw.xa_prepare_entry(&x, rmid, TMNOFLAGS); }
int Commit(XID x, int rmid, long f = TMNOFLAGS) { return sw.xa_commit_entry(&x, rmid, f); }
int Rollback(XID x, int rmid) { return sw.xa_rollback_entry(&x, rmid, TMNOFLAGS); }

// All XIDs xa_recover reports, read with a cursor of `batch` at a time.
std::vector<XID> RecoverAll(int rmid, long batch = 16) {
  std::vector<XID> out(static_cast<size_t>(batch));
  std::vector<XID> all;
  long flags = TMSTARTRSCAN;
  for (;;) {
    int n = sw.xa_recover_entry(out.data(), batch, rmid, flags);
    EXPECT_GE(n, 0) << pgsql::LastError(rmid);
    if (n <= 0) break;
    all.insert(all.end(), out.begin(), out.begin() + n);
    if (n < batch) break;
    flags = TMNOFLAGS;
  }
  sw.xa_recover_entry(out.data(), 0, rmid, TMENDRSCAN);
  return all;
}

bool Contains(const std::vector<XID>& v, const XID& x) {
  for (const XID& y : v) {
    if (rm::XidEqual(x, y)) return true;
  }
  return false;
}

// Runs sql on the calling thread's branch connection.
std::string Sql(int rmid, const std::string& sql) { return Exec(xatm_pgsql_conn(rmid), sql); }

// Starts x on rmid, runs sql in it, ends it and commits it in one phase: the
// code of the first call that did not answer XA_OK, or the commit's.
int OnePhase(XID x, int rmid, const std::string& sql) {
  if (int r = Start(x, rmid); r != XA_OK) return r;
  Sql(rmid, sql);
  if (int r = End(x, rmid); r != XA_OK) return r;
  return Commit(x, rmid, TMONEPHASE);
}

// Starts x on rmid, runs sql in it, ends it and prepares it: the code of the
// first call that did not answer XA_OK, or the prepare's.
int PrepareWith(XID x, int rmid, const std::string& sql) {
  if (int r = Start(x, rmid); r != XA_OK) return r;
  Sql(rmid, sql);
  if (int r = End(x, rmid); r != XA_OK) return r;
  return Prepare(x, rmid);
}

std::string CountPrepared(PGconn* c) { return Exec(c, "SELECT count(*) FROM pg_prepared_xacts"); }

class PgRmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    admin_ = ConnectOrDie(db_.conninfo());
    Exec(admin_, "CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL CHECK (v >= 0))");
    Exec(admin_, "INSERT INTO acct SELECT g, 100 FROM generate_series(1, 10) g");
    ASSERT_EQ(XA_OK, Open(1, db_.conninfo())) << pgsql::LastError(1);
  }
  void TearDown() override {
    Close(1);
    Close(2);
    PQfinish(admin_);
  }
  std::string V(int id) { return Exec(admin_, "SELECT v FROM acct WHERE id = " + std::to_string(id)); }
  std::string Prepared() {
    return Exec(admin_, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()");
  }

  ScratchDb db_;
  PGconn* admin_ = nullptr;
};

TEST(PgGid, EveryByteRoundTripsWithinTheLengthLimit) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string g(1 + rng() % 64, '\0'), b(rng() % 65, '\0');
    for (char& c : g) c = static_cast<char>(rng());
    for (char& c : b) c = static_cast<char>(rng());
    XID x = MakeXid(g, b, static_cast<long>(static_cast<int32_t>(rng())));
    if (x.formatID == -1) continue;
    std::string gid = pgsql::XidToGid(x);
    EXPECT_LE(gid.size(), 189u);
    EXPECT_EQ(std::string::npos, gid.find('\''));
    XID y;
    ASSERT_TRUE(pgsql::GidToXid(gid, &y)) << gid;
    EXPECT_TRUE(rm::XidEqual(x, y));
  }
}

TEST(PgGid, UsesPgjdbcFormAndRejectsForeignGids) {
  XID x = MakeXid("abc", "d", 4660);
  EXPECT_EQ("4660_YWJj_ZA==", pgsql::XidToGid(x));
  XID y;
  for (const char* bad : {"", "foreign-gid", "1_abc", "1_YWJj", "x_YWJj_ZA==", "1_YW!j_ZA==",
                          "1_YWJj_ZA=", "1__ZA==", "1_YWJj_ZA==_x", "-1_YWJj_ZA=="}) {
    EXPECT_FALSE(pgsql::GidToXid(bad, &y)) << bad;
  }
}

TEST_F(PgRmTest, CommitsAPreparedBranch) {
  XID x = MakeXid("g-commit", "b1");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = v - 10 WHERE id = 1")) << pgsql::LastError(1);
  EXPECT_EQ("1", Prepared());
  EXPECT_EQ("100", V(1));  // invisible until commit
  ASSERT_EQ(XA_OK, Commit(x, 1)) << pgsql::LastError(1);
  EXPECT_EQ("90", V(1));
  EXPECT_EQ("0", Prepared());
}

TEST_F(PgRmTest, RollsBackAPreparedBranch) {
  XID x = MakeXid("g-rb", "b1");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 0 WHERE id = 2")) << pgsql::LastError(1);
  ASSERT_EQ(XA_OK, Rollback(x, 1));
  EXPECT_EQ("100", V(2));
  EXPECT_EQ("0", Prepared());
}

TEST_F(PgRmTest, BinaryXidFullOfQuotesBackslashesAndNulsRoundTrips) {
  std::string g(64, '\''), b(64, '\\');
  for (size_t i = 0; i < 64; i += 3) g[i] = '\0', b[i] = '\0';
  g[1] = '"';
  b[2] = '\xff';
  XID x = MakeXid(g, b, -2);
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 1 WHERE id = 3")) << pgsql::LastError(1);
  EXPECT_EQ("1", Exec(admin_, "SELECT count(*) FROM pg_prepared_xacts WHERE length(gid) <= 199"));
  std::vector<XID> found = RecoverAll(1);
  ASSERT_EQ(1u, found.size());
  EXPECT_TRUE(rm::XidEqual(x, found[0]));
  ASSERT_EQ(XA_OK, Commit(found[0], 1));
  EXPECT_EQ("1", V(3));
}

TEST_F(PgRmTest, TwoBranchesOfOneGtridInTheSameDatabaseDoNotCollide) {
  ASSERT_EQ(XA_OK, Open(2, db_.conninfo()));
  XID a = MakeXid("same-gtrid", "branch-a"), b = MakeXid("same-gtrid", "branch-b");
  ASSERT_EQ(XA_OK, Start(a, 1));
  ASSERT_EQ(XA_OK, Start(b, 2));
  Sql(1, "UPDATE acct SET v = v - 5 WHERE id = 4");
  Sql(2, "UPDATE acct SET v = v + 5 WHERE id = 5");
  ASSERT_EQ(XA_OK, End(a, 1));
  ASSERT_EQ(XA_OK, End(b, 2));
  ASSERT_EQ(XA_OK, Prepare(a, 1)) << pgsql::LastError(1);
  ASSERT_EQ(XA_OK, Prepare(b, 2)) << pgsql::LastError(2);
  EXPECT_EQ("2", Prepared());
  ASSERT_EQ(XA_OK, Commit(a, 1));
  ASSERT_EQ(XA_OK, Commit(b, 2));
  EXPECT_EQ("95", V(4));
  EXPECT_EQ("105", V(5));
}

TEST_F(PgRmTest, TwoBranchesInTwoDatabasesOfOneCluster) {
  ScratchDb other;
  PGconn* o = ConnectOrDie(other.conninfo());
  Exec(o, "CREATE TABLE t (id int PRIMARY KEY)");
  ASSERT_EQ(XA_OK, Open(2, other.conninfo()));
  XID a = MakeXid("two-dbs", "a"), b = MakeXid("two-dbs", "b");
  ASSERT_EQ(XA_OK, Start(a, 1));
  ASSERT_EQ(XA_OK, Start(b, 2));
  Sql(1, "UPDATE acct SET v = 7 WHERE id = 6");
  Sql(2, "INSERT INTO t VALUES (1)");
  ASSERT_EQ(XA_OK, End(a, 1));
  ASSERT_EQ(XA_OK, End(b, 2));
  ASSERT_EQ(XA_OK, Prepare(a, 1));
  ASSERT_EQ(XA_OK, Prepare(b, 2));
  // Each RM recovers only the branches of its own database.
  std::vector<XID> r1 = RecoverAll(1), r2 = RecoverAll(2);
  EXPECT_TRUE(Contains(r1, a) && !Contains(r1, b));
  EXPECT_TRUE(Contains(r2, b) && !Contains(r2, a));
  ASSERT_EQ(XA_OK, Commit(a, 1));
  ASSERT_EQ(XA_OK, Commit(b, 2));
  EXPECT_EQ("7", V(6));
  EXPECT_EQ("1", Exec(o, "SELECT count(*) FROM t"));
  PQfinish(o);
}

TEST_F(PgRmTest, ForeignPreparedTransactionIsToleratedByRecover) {
  Exec(admin_, "BEGIN");
  Exec(admin_, "UPDATE acct SET v = 50 WHERE id = 7");
  Exec(admin_, "PREPARE TRANSACTION 'made-by-hand'");
  XID x = MakeXid("ours", "b");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 51 WHERE id = 8")) << pgsql::LastError(1);
  std::vector<XID> found = RecoverAll(1);
  ASSERT_EQ(1u, found.size());
  EXPECT_TRUE(rm::XidEqual(x, found[0]));
  ASSERT_EQ(XA_OK, Rollback(x, 1));
  Exec(admin_, "ROLLBACK PREPARED 'made-by-hand'");
}

TEST_F(PgRmTest, FailedStatementMakesTheBranchVoteRollback) {
  XID x = MakeXid("g-fail", "b");
  ASSERT_EQ(XA_OK, Start(x, 1));
  Sql(1, "UPDATE acct SET v = v + 1 WHERE id = 9");
  PGresult* r = PQexec(xatm_pgsql_conn(1), "UPDATE acct SET v = -1 WHERE id = 9");  // CHECK fails
  EXPECT_EQ(PGRES_FATAL_ERROR, PQresultStatus(r));
  PQclear(r);
  int rc = End(x, 1);
  EXPECT_GE(rc, XA_RBBASE);
  EXPECT_LE(rc, XA_RBEND);
  rc = Prepare(x, 1);
  EXPECT_GE(rc, XA_RBBASE);
  EXPECT_LE(rc, XA_RBEND);
  EXPECT_EQ("0", Prepared());
  EXPECT_EQ("100", V(9));
}

TEST_F(PgRmTest, PrepareOfAnAbortedTransactionIsARollbackVoteNotSuccess) {
  // The trap: PREPARE TRANSACTION in an aborted transaction answers
  // PGRES_COMMAND_OK with the tag ROLLBACK. Reach it by failing a statement
  // after xa_end (which checked a healthy transaction).
  XID x = MakeXid("g-aborted", "b");
  ASSERT_EQ(XA_OK, Start(x, 1));
  Sql(1, "UPDATE acct SET v = v + 1 WHERE id = 10");
  ASSERT_EQ(XA_OK, End(x, 1));
  PGresult* r = PQexec(xatm_pgsql_conn(1), "SELECT 1/0");
  PQclear(r);
  int rc = Prepare(x, 1);
  EXPECT_GE(rc, XA_RBBASE) << pgsql::LastError(1);
  EXPECT_LE(rc, XA_RBEND);
  EXPECT_EQ("0", Prepared());
  EXPECT_EQ("100", V(10));
  // PostgreSQL's own behaviour, which the RM must not trust.
  PGconn* c = ConnectOrDie(db_.conninfo());
  Exec(c, "BEGIN");
  PQclear(PQexec(c, "SELECT 1/0"));
  PGresult* p = PQexec(c, "PREPARE TRANSACTION 'trap'");
  EXPECT_EQ(PGRES_COMMAND_OK, PQresultStatus(p));
  EXPECT_STREQ("ROLLBACK", PQcmdStatus(p));
  PQclear(p);
  PQfinish(c);
  EXPECT_EQ("0", Prepared());
}

TEST_F(PgRmTest, ReadOnlyBranchVotesReadOnlyAndLeavesNothingPrepared) {
  XID x = MakeXid("g-ro", "b");
  ASSERT_EQ(XA_OK, Start(x, 1));
  EXPECT_EQ("100", Sql(1, "SELECT v FROM acct WHERE id = 1"));
  ASSERT_EQ(XA_OK, End(x, 1));
  EXPECT_EQ(XA_RDONLY, Prepare(x, 1));
  EXPECT_EQ("0", Prepared());
  EXPECT_EQ(PQTRANS_IDLE, PQtransactionStatus(xatm_pgsql_conn(1)));
  // Already finished: there is nothing left to commit.
  EXPECT_EQ(XAER_NOTA, Commit(x, 1));
}

// xa_end sends the transaction-id query that xa_prepare reads. A statement the
// application runs on the connection between the two (outside the branch's
// association: a protocol violation, but libpq allows it) must not leave
// xa_prepare with the answer from before it.
TEST_F(PgRmTest, StatementBetweenEndAndPrepareIsNotMissedByTheVote) {
  XID x = MakeXid("g-late-write", "b");
  ASSERT_EQ(XA_OK, Start(x, 1));
  EXPECT_EQ("100", Sql(1, "SELECT v FROM acct WHERE id = 1"));
  ASSERT_EQ(XA_OK, End(x, 1));  // read-only so far
  EXPECT_EQ("", Sql(1, "UPDATE acct SET v = 7 WHERE id = 1"));
  // The branch wrote: it is prepared, not committed as read-only.
  ASSERT_EQ(XA_OK, Prepare(x, 1)) << pgsql::LastError(1);
  EXPECT_EQ("1", Prepared());
  EXPECT_EQ("100", V(1));
  ASSERT_EQ(XA_OK, Rollback(x, 1)) << pgsql::LastError(1);
  EXPECT_EQ("100", V(1));

  // And the other way round: a write before xa_end, a read after it.
  XID y = MakeXid("g-late-read", "b");
  ASSERT_EQ(XA_OK, Start(y, 1));
  Sql(1, "UPDATE acct SET v = 8 WHERE id = 2");
  ASSERT_EQ(XA_OK, End(y, 1));
  EXPECT_EQ("8", Sql(1, "SELECT v FROM acct WHERE id = 2"));
  ASSERT_EQ(XA_OK, Prepare(y, 1)) << pgsql::LastError(1);
  ASSERT_EQ(XA_OK, Commit(y, 1)) << pgsql::LastError(1);
  EXPECT_EQ("8", V(2));
  EXPECT_EQ("0", Prepared());
}

// A statement whose answer says it wrote rows (UPDATE n, INSERT 0 n, DELETE n,
// MERGE n with n > 0) tells the RM that the transaction has an id: xa_end then
// sends no id query (the connection has no command in flight) and xa_prepare
// prepares at once. Writes that no answer shows are still found by the query.
TEST_F(PgRmTest, AWriteTheRmSawSkipsTheIdQueryAndOneItCannotSeeIsStillPrepared) {
  PGconn* c = xatm_pgsql_conn(1);
  XID x = MakeXid("g-seen", "b");
  ASSERT_EQ(XA_OK, Start(x, 1));
  Sql(1, "UPDATE acct SET v = 11 WHERE id = 1");
  ASSERT_EQ(XA_OK, End(x, 1));
  EXPECT_EQ(PQTRANS_INTRANS, PQtransactionStatus(c)) << "an id query was sent after a visible write";
  ASSERT_EQ(XA_OK, Prepare(x, 1)) << pgsql::LastError(1);
  EXPECT_EQ("1", Prepared());
  ASSERT_EQ(XA_OK, Commit(x, 1)) << pgsql::LastError(1);
  EXPECT_EQ("11", V(1));

  // Rows written by a function called from a SELECT: the answer is "SELECT 1".
  Exec(admin_, "CREATE FUNCTION bump(i int) RETURNS int LANGUAGE sql AS "
               "'UPDATE acct SET v = v + 1 WHERE id = i RETURNING v'");
  XID y = MakeXid("g-unseen", "b");
  ASSERT_EQ(XA_OK, Start(y, 1));
  EXPECT_EQ("101", Sql(1, "SELECT bump(2)"));
  ASSERT_EQ(XA_OK, End(y, 1));
  EXPECT_EQ(PQTRANS_ACTIVE, PQtransactionStatus(c)) << "no id query in flight";
  ASSERT_EQ(XA_OK, Prepare(y, 1)) << pgsql::LastError(1);  // not XA_RDONLY: nothing lost
  EXPECT_EQ("1", Prepared());
  ASSERT_EQ(XA_OK, Commit(y, 1)) << pgsql::LastError(1);
  EXPECT_EQ("101", V(2));

  // Statements that wrote no row leave the branch read-only.
  XID z = MakeXid("g-zero", "b");
  ASSERT_EQ(XA_OK, Start(z, 1));
  Sql(1, "UPDATE acct SET v = 0 WHERE id = 999");
  Sql(1, "DELETE FROM acct WHERE id = 999");
  Sql(1, "INSERT INTO acct VALUES (1, 5) ON CONFLICT DO NOTHING");
  ASSERT_EQ(XA_OK, End(z, 1));
  EXPECT_EQ(XA_RDONLY, Prepare(z, 1)) << pgsql::LastError(1);
  EXPECT_EQ("0", Prepared());

  // A visible write committed in one phase: the id is asked for first.
  XID w = MakeXid("g-seen-1pc", "b");
  ASSERT_EQ(XA_OK, Start(w, 1));
  Sql(1, "INSERT INTO acct VALUES (11, 3)");
  ASSERT_EQ(XA_OK, End(w, 1));
  EXPECT_EQ(PQTRANS_INTRANS, PQtransactionStatus(c));
  ASSERT_EQ(XA_OK, Commit(w, 1, TMONEPHASE)) << pgsql::LastError(1);
  EXPECT_EQ("3", V(11));
  EXPECT_EQ(PQTRANS_IDLE, PQtransactionStatus(c));
}

// The answer to xa_end's query is dropped by any other call: ended, joined
// again, written, ended, one-phase committed.
TEST_F(PgRmTest, JoinAfterEndAndOnePhaseCommitUseAFreshAnswer) {
  XID x = MakeXid("g-rejoin", "b");
  ASSERT_EQ(XA_OK, Start(x, 1));
  ASSERT_EQ(XA_OK, End(x, 1));  // nothing written yet
  ASSERT_EQ(XA_OK, Start(x, 1, TMJOIN)) << pgsql::LastError(1);
  Sql(1, "UPDATE acct SET v = 9 WHERE id = 3");
  ASSERT_EQ(XA_OK, End(x, 1));
  ASSERT_EQ(XA_OK, Commit(x, 1, TMONEPHASE)) << pgsql::LastError(1);
  EXPECT_EQ("9", V(3));
  // A read-only branch ended and committed in one phase.
  XID y = MakeXid("g-ro-1pc", "b");
  ASSERT_EQ(XA_OK, Start(y, 1));
  EXPECT_EQ("9", Sql(1, "SELECT v FROM acct WHERE id = 3"));
  ASSERT_EQ(XA_OK, End(y, 1));
  ASSERT_EQ(XA_OK, Commit(y, 1, TMONEPHASE)) << pgsql::LastError(1);
  EXPECT_EQ(PQTRANS_IDLE, PQtransactionStatus(xatm_pgsql_conn(1)));
}

TEST_F(PgRmTest, TmFailVotesRollbackAndReleasesLocksAtOnce) {
  XID x = MakeXid("g-tmfail", "b");
  ASSERT_EQ(XA_OK, Start(x, 1));
  Sql(1, "UPDATE acct SET v = 0 WHERE id = 1");
  EXPECT_EQ(XA_RBROLLBACK, End(x, 1, TMFAIL));
  // The row lock is gone already.
  Exec(admin_, "SET lock_timeout = '1s'");
  Exec(admin_, "UPDATE acct SET v = v WHERE id = 1");
  EXPECT_EQ(XA_RBROLLBACK, Prepare(x, 1));
  EXPECT_EQ("100", V(1));
}

TEST_F(PgRmTest, OnePhaseCommit) {
  ASSERT_EQ(XA_OK, OnePhase(MakeXid("g-1pc", "b"), 1, "UPDATE acct SET v = 42 WHERE id = 2")) << pgsql::LastError(1);
  EXPECT_EQ("42", V(2));
  EXPECT_EQ("0", Prepared());
}

TEST_F(PgRmTest, DeferredForeignKeyViolationSurfacesAtPrepareAsIntegrityVote) {
  Exec(admin_, "CREATE TABLE child (id int PRIMARY KEY, acct int REFERENCES acct(id) "
               "DEFERRABLE INITIALLY DEFERRED)");
  XID x = MakeXid("g-fk", "b");
  ASSERT_EQ(XA_OK, Start(x, 1));
  Sql(1, "INSERT INTO child VALUES (1, 999)");  // no account 999: checked at PREPARE
  ASSERT_EQ(XA_OK, End(x, 1));
  EXPECT_EQ(XA_RBINTEGRITY, Prepare(x, 1)) << pgsql::LastError(1);
  EXPECT_EQ("0", Prepared());
  // And at a one-phase COMMIT.
  EXPECT_EQ(XA_RBINTEGRITY, OnePhase(MakeXid("g-fk1", "b"), 1, "INSERT INTO child VALUES (2, 998)"))
      << pgsql::LastError(1);
  EXPECT_EQ("0", Exec(admin_, "SELECT count(*) FROM child"));
}

TEST_F(PgRmTest, StateTableWrongSequencesAreProtocolErrors) {
  XID x = MakeXid("g-proto", "b"), other = MakeXid("g-other", "b");
  EXPECT_EQ(XAER_NOTA, End(x, 1));
  EXPECT_EQ(XAER_NOTA, Rollback(x, 1));
  EXPECT_EQ(XAER_NOTA, Commit(x, 1));
  EXPECT_EQ(XAER_NOTA, Prepare(x, 1));
  EXPECT_EQ(XAER_NOTA, Start(x, 1, TMJOIN));
  EXPECT_EQ(XAER_NOTA, Start(x, 1, TMRESUME));
  ASSERT_EQ(XA_OK, Start(x, 1));
  EXPECT_EQ(XAER_DUPID, Start(x, 1));
  EXPECT_EQ(XAER_PROTO, Start(other, 1));          // still associated with x
  EXPECT_EQ(XAER_PROTO, Prepare(x, 1));            // not ended
  EXPECT_EQ(XAER_PROTO, Commit(x, 1, TMONEPHASE));  // not ended
  EXPECT_EQ(XAER_PROTO, Rollback(x, 1));           // associated with this thread
  EXPECT_EQ(XAER_PROTO, Start(x, 1, TMJOIN));      // active, not idle
  EXPECT_EQ(XAER_PROTO, Close(1));
  // Suspend and resume.
  EXPECT_EQ(XA_OK, End(x, 1, TMSUSPEND));
  EXPECT_EQ(XAER_PROTO, End(x, 1, TMSUSPEND));
  EXPECT_EQ(XAER_PROTO, Start(x, 1, TMJOIN));
  EXPECT_EQ(XA_OK, Start(x, 1, TMRESUME));
  Sql(1, "UPDATE acct SET v = 3 WHERE id = 3");
  EXPECT_EQ(XA_OK, End(x, 1));
  EXPECT_EQ(XAER_PROTO, End(x, 1));
  EXPECT_EQ(XAER_PROTO, Start(x, 1, TMRESUME));
  // Join again, end again.
  EXPECT_EQ(XA_OK, Start(x, 1, TMJOIN));
  EXPECT_EQ(XA_OK, End(x, 1));
  EXPECT_EQ(XAER_RMERR, Start(other, 1));  // one branch per connection
  EXPECT_EQ(XAER_PROTO, Commit(x, 1));     // not prepared, no TMONEPHASE
  ASSERT_EQ(XA_OK, Prepare(x, 1));
  EXPECT_EQ(XAER_PROTO, Prepare(x, 1));             // prepared already
  EXPECT_EQ(XAER_PROTO, Commit(x, 1, TMONEPHASE));  // prepared: two-phase commit only
  EXPECT_EQ(XAER_DUPID, Start(x, 1));               // the xid is prepared
  EXPECT_EQ(XAER_PROTO, sw.xa_forget_entry(&x, 1, TMNOFLAGS));
  ASSERT_EQ(XA_OK, Commit(x, 1));
  EXPECT_EQ(XAER_NOTA, Commit(x, 1));  // done: a retry after a lost reply sees NOTA
  EXPECT_EQ(XAER_NOTA, sw.xa_forget_entry(&x, 1, TMNOFLAGS));
  EXPECT_EQ("3", V(3));
}

// xa_start asks the server whether the gid is prepared by any connection,
// with a statement the RM prepares on each connection; an application that
// deallocates its statements does not blind it.
TEST_F(PgRmTest, AnXidPreparedOnAnotherConnectionIsADuplicateEvenAfterDeallocateAll) {
  XID x = MakeXid("g-dup", "b");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 11 WHERE id = 1")) << pgsql::LastError(1);
  ASSERT_EQ(XA_OK, Open(2, db_.conninfo()));
  EXPECT_EQ(XAER_DUPID, Start(x, 2)) << pgsql::LastError(2);
  for (const char* forget : {"DEALLOCATE ALL", "DISCARD ALL"}) {
    EXPECT_EQ("", Sql(2, forget));
    EXPECT_EQ(XAER_DUPID, Start(x, 2)) << forget << ": " << pgsql::LastError(2);
    EXPECT_EQ(PQTRANS_IDLE, PQtransactionStatus(xatm_pgsql_conn(2)));
    // Another xid starts, writes and commits on the same connection.
    EXPECT_EQ("", Sql(2, forget));
    ASSERT_EQ(XA_OK, OnePhase(MakeXid(std::string("g-after-") + forget, "b"), 2,
                              "UPDATE acct SET v = v + 1 WHERE id = 2"))
        << forget << ": " << pgsql::LastError(2);
  }
  EXPECT_EQ("102", V(2));
  ASSERT_EQ(XA_OK, Commit(x, 1)) << pgsql::LastError(1);
  EXPECT_EQ("11", V(1));
  // The gid is free again.
  ASSERT_EQ(XA_OK, Start(x, 2)) << pgsql::LastError(2);
  ASSERT_EQ(XA_OK, End(x, 2));
  EXPECT_EQ(XA_OK, Rollback(x, 2));
}

// The TM's xids are new by construction, so its connections begin a branch
// without the duplicate check. Were a duplicate to slip through, it could not
// prepare, and the transaction that holds the xid stays prepared, untouched.
TEST_F(PgRmTest, ATrustedConnectionSkipsTheDuplicateCheckAndADuplicateCannotPrepare) {
  XID x = MakeXid("g-trusted-dup", "b");
  ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = 11 WHERE id = 1")) << pgsql::LastError(1);
  EXPECT_FALSE(pgsql::TrustFreshXids(2));  // not open on this thread yet
  ASSERT_EQ(XA_OK, Open(2, db_.conninfo()));
  ASSERT_TRUE(pgsql::TrustFreshXids(2));
  ASSERT_EQ(XA_OK, Start(x, 2)) << pgsql::LastError(2);
  EXPECT_EQ(PQTRANS_INTRANS, PQtransactionStatus(xatm_pgsql_conn(2)));
  Sql(2, "UPDATE acct SET v = 12 WHERE id = 2");
  ASSERT_EQ(XA_OK, End(x, 2));
  EXPECT_EQ(XA_RBOTHER, Prepare(x, 2));
  EXPECT_NE(std::string::npos, pgsql::LastError(2).find("another prepared transaction has this XID"))
      << pgsql::LastError(2);
  EXPECT_EQ(PQTRANS_IDLE, PQtransactionStatus(xatm_pgsql_conn(2)));
  EXPECT_EQ("1", Prepared());
  EXPECT_EQ("100", V(2));
  ASSERT_EQ(XA_OK, Commit(x, 1)) << pgsql::LastError(1);
  EXPECT_EQ("11", V(1));
  // The trusted connection goes on: another xid commits on it.
  ASSERT_EQ(XA_OK, OnePhase(MakeXid("g-trusted-next", "b"), 2, "UPDATE acct SET v = v + 1 WHERE id = 2"))
      << pgsql::LastError(2);
  EXPECT_EQ("101", V(2));
}

TEST_F(PgRmTest, BadArgumentsAndAsyncAreRefused) {
  XID x = MakeXid("g-args", "b");
  EXPECT_EQ(XAER_ASYNC, Start(x, 1, TMASYNC));
  // xa_prepare and xa_commit take TMASYNC (tests/conformance); their answer
  // on an unknown branch comes from xa_complete.
  for (int commit = 0; commit < 2; ++commit) {
    int h = commit ? sw.xa_commit_entry(&x, 1, TMASYNC) : sw.xa_prepare_entry(&x, 1, TMASYNC);
    ASSERT_GE(h, 0);
    int answer = XA_OK;
    EXPECT_EQ(XA_OK, sw.xa_complete_entry(&h, &answer, 1, TMNOFLAGS));
    EXPECT_EQ(XAER_NOTA, answer);
  }
  EXPECT_EQ(XAER_ASYNC, sw.xa_rollback_entry(&x, 1, TMASYNC));
  EXPECT_EQ(XAER_INVAL, sw.xa_start_entry(nullptr, 1, TMNOFLAGS));
  XID bad = x;
  bad.gtrid_length = 65;
  EXPECT_EQ(XAER_INVAL, Start(bad, 1));
  bad = x;
  bad.formatID = -1;
  EXPECT_EQ(XAER_INVAL, Start(bad, 1));
  EXPECT_EQ(XAER_INVAL, Start(x, 1, TMSUCCESS));
  ASSERT_EQ(XA_OK, Start(x, 1));
  EXPECT_EQ(XAER_INVAL, End(x, 1, TMSUCCESS | TMFAIL));
  EXPECT_EQ(XAER_INVAL, End(x, 1, TMNOFLAGS));
  EXPECT_EQ(XA_OK, End(x, 1));
  EXPECT_EQ(XA_OK, Rollback(x, 1));
  // Calls on an rmid that was never opened on this thread.
  EXPECT_EQ(XAER_PROTO, Start(x, 77));
  XID buf[4];
  EXPECT_EQ(XAER_PROTO, sw.xa_recover_entry(buf, 4, 77, TMSTARTRSCAN));
  EXPECT_EQ(XAER_INVAL, sw.xa_recover_entry(buf, 4, 1, TMNOFLAGS));  // no scan open
  EXPECT_EQ(XAER_INVAL, sw.xa_recover_entry(nullptr, 4, 1, TMSTARTRSCAN));
  int ret = 0, handle = 0;
  EXPECT_EQ(XAER_PROTO, sw.xa_complete_entry(&handle, &ret, 1, TMNOFLAGS));
  EXPECT_EQ(XA_OK, Open(1, db_.conninfo()));  // a second open is a no-op
  EXPECT_STREQ("xatm_pgsql", sw.name);
  EXPECT_EQ(TMNOMIGRATE, sw.flags);
  EXPECT_EQ(0, sw.version);
}

TEST_F(PgRmTest, RecoverCursorHandsOutBranchesInSmallBatches) {
  std::set<std::string> want;
  ASSERT_EQ(XA_OK, Open(2, db_.conninfo()));
  for (int i = 0; i < 5; ++i) {
    XID x = MakeXid("cursor-" + std::to_string(i), "b");
    ASSERT_EQ(XA_OK, PrepareWith(x, 1, "UPDATE acct SET v = v + 1 WHERE id = " + std::to_string(i + 1)))
        << pgsql::LastError(1);
    want.insert(rm::XidToString(x));
  }
  XID buf[2];
  std::set<std::string> got;
  EXPECT_EQ(2, sw.xa_recover_entry(buf, 2, 2, TMSTARTRSCAN));
  for (auto& x : buf) got.insert(rm::XidToString(x));
  EXPECT_EQ(2, sw.xa_recover_entry(buf, 2, 2, TMNOFLAGS));
  for (auto& x : buf) got.insert(rm::XidToString(x));
  EXPECT_EQ(1, sw.xa_recover_entry(buf, 2, 2, TMNOFLAGS | TMENDRSCAN));
  got.insert(rm::XidToString(buf[0]));
  EXPECT_EQ(want, got);
  EXPECT_EQ(XAER_INVAL, sw.xa_recover_entry(buf, 2, 2, TMNOFLAGS));  // scan closed
  // A scan in one call.
  EXPECT_EQ(5u, RecoverAll(2, 100).size());
  for (const XID& x : RecoverAll(2)) EXPECT_EQ(XA_OK, Rollback(x, 2));
  EXPECT_EQ("0", Prepared());
}

TEST_F(PgRmTest, SessionIsFreeForANewBranchRightAfterPrepare) {
  XID a = MakeXid("free-a", "b"), b = MakeXid("free-b", "b");
  ASSERT_EQ(XA_OK, PrepareWith(a, 1, "UPDATE acct SET v = 1 WHERE id = 1")) << pgsql::LastError(1);
  ASSERT_EQ(XA_OK, Start(b, 1));
  Sql(1, "UPDATE acct SET v = 2 WHERE id = 2");
  // Finishing a prepared branch while this connection is inside another one
  // (PostgreSQL refuses COMMIT PREPARED in a transaction block).
  ASSERT_EQ(XA_OK, Commit(a, 1)) << pgsql::LastError(1);
  ASSERT_EQ(XA_OK, End(b, 1));
  ASSERT_EQ(XA_OK, Commit(b, 1, TMONEPHASE));
  EXPECT_EQ("1", V(1));
  EXPECT_EQ("2", V(2));
}

TEST_F(PgRmTest, EachThreadHasItsOwnConnection) {
  PGconn* mine = xatm_pgsql_conn(1);
  ASSERT_NE(nullptr, mine);
  PGconn* theirs = nullptr;
  PGconn* before_open = mine;
  std::thread t([&] {
    before_open = xatm_pgsql_conn(1);
    if (Open(1, db_.conninfo()) == XA_OK) theirs = xatm_pgsql_conn(1);
    XID x = MakeXid("thread", "b");
    EXPECT_EQ(XA_OK, Start(x, 1));
    EXPECT_EQ(XA_OK, End(x, 1));
    EXPECT_EQ(XA_RDONLY, Prepare(x, 1));
    Close(1);
  });
  t.join();
  EXPECT_EQ(nullptr, before_open);
  EXPECT_NE(nullptr, theirs);
  EXPECT_NE(mine, theirs);
  EXPECT_EQ(mine, xatm_pgsql_conn(1));
  EXPECT_EQ(XA_OK, Close(1));
  EXPECT_EQ(nullptr, xatm_pgsql_conn(1));
}

TEST(PgRmOpen, UnreachableServerIsRmerrAndNeverShowsThePassword) {
  int rc = Open(31, "host=/nonexistent-socket-dir port=1 user=u password=sekret-pw dbname=d connect_timeout=2");
  EXPECT_EQ(XAER_RMERR, rc);
  std::string e = pgsql::LastError(31);
  EXPECT_NE(std::string::npos, e.find("cannot connect")) << e;
  EXPECT_NE(std::string::npos, e.find("/nonexistent-socket-dir")) << e;
  EXPECT_EQ(std::string::npos, e.find("sekret-pw")) << e;
  EXPECT_EQ(nullptr, xatm_pgsql_conn(31));
  EXPECT_EQ(XAER_RMERR, Open(32, "this is = not a conninfo"));
  EXPECT_EQ(XAER_INVAL, sw.xa_open_entry(nullptr, 33, TMNOFLAGS));
  std::string red = pgsql::RedactConninfo("host=h password=secret dbname=d");
  EXPECT_NE(std::string::npos, red.find("password=***")) << red;
  EXPECT_NE(std::string::npos, red.find("host=h")) << red;
  EXPECT_EQ(std::string::npos, red.find("secret")) << red;
  EXPECT_EQ(std::string::npos,
            pgsql::RedactConninfo("postgresql://u:topsecret@h/d").find("topsecret"));
}

TEST(PgRmOpen, MaxPreparedTransactionsZeroIsRefusedWithTheFix) {
  OwnCluster c(/*max_prepared_transactions=*/0);
  EXPECT_EQ(XAER_RMERR, Open(41, c.conninfo()));
  std::string e = pgsql::LastError(41);
  EXPECT_NE(std::string::npos, e.find("max_prepared_transactions = 0")) << e;
  EXPECT_NE(std::string::npos, e.find("postgresql.conf")) << e;
  EXPECT_EQ(nullptr, xatm_pgsql_conn(41));
}

// Statements the TM runs in a branch (the last resource's decision row) read
// the transaction id in the same round trip: the one-phase commit sends no id
// query of its own, and when its COMMIT's reply is lost, that id still tells
// the outcome.
TEST(PgRmExecInBranch, TheOnePhaseCommitUsesTheIdReadWithTheStatements) {
  OwnCluster c(/*max_prepared_transactions=*/4, /*tcp=*/true);
  PgProxy proxy(c.port());
  const std::string via = "host=127.0.0.1 port=" + std::to_string(proxy.port()) +
                          " user=postgres dbname=postgres sslmode=disable gssencmode=disable connect_timeout=5";
  PGconn* admin = ConnectOrDie(c.conninfo());
  Exec(admin, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)");
  ASSERT_EQ(XA_OK, Open(61, via)) << pgsql::LastError(61);
  EXPECT_EQ("no active branch of this RM on this thread", pgsql::ExecInBranch(61, "SELECT 1"));
  // Any id query sent on its own is cut before the server sees it.
  proxy.CutOn("SELECT pg_current_xact_id_if_assigned", PgProxy::Cut::kBeforeForward, 10);
  for (int i = 1; i <= 2; ++i) {
    XID x = MakeXid("in-branch-" + std::to_string(i), "b");
    ASSERT_EQ(XA_OK, Start(x, 61)) << pgsql::LastError(61);
    Exec(xatm_pgsql_conn(61), "INSERT INTO t VALUES (" + std::to_string(i) + ", 1)");
    ASSERT_EQ("", pgsql::ExecInBranch(61, "UPDATE t SET v = 2 WHERE id = " + std::to_string(i)));
    ASSERT_EQ(XA_OK, End(x, 61));
    // The second time, the COMMIT runs but its reply never arrives.
    if (i == 2) proxy.CutOn("COMMIT", PgProxy::Cut::kAfterReply);
    EXPECT_EQ(XA_OK, Commit(x, 61, TMONEPHASE)) << i << ": " << pgsql::LastError(61);
    EXPECT_EQ("2", Exec(admin, "SELECT v FROM t WHERE id = " + std::to_string(i))) << i;
  }
  EXPECT_EQ(1, proxy.cuts());  // the COMMIT's reply, and no id query
  // A failed statement: the branch can only roll back.
  XID x = MakeXid("in-branch-bad", "b");
  ASSERT_EQ(XA_OK, Start(x, 61));
  EXPECT_NE("", pgsql::ExecInBranch(61, "INSERT INTO t VALUES (1, 1)"));
  ASSERT_EQ(XA_RBROLLBACK, End(x, 61));
  EXPECT_EQ(XA_OK, Rollback(x, 61));
  Close(61);
  PQfinish(admin);
}

TEST(PgRmSlots, ExhaustedPreparedSlotsAreARollbackVoteAndNothingSticks) {
  OwnCluster c(/*max_prepared_transactions=*/2);
  PGconn* admin = ConnectOrDie(c.conninfo());
  Exec(admin, "CREATE TABLE t (id int PRIMARY KEY)");
  ASSERT_EQ(XA_OK, Open(51, c.conninfo()));
  std::vector<XID> done;
  for (int i = 0; i < 3; ++i) {
    XID x = MakeXid("slot-" + std::to_string(i), "b");
    ASSERT_EQ(XA_OK, Start(x, 51));
    Exec(xatm_pgsql_conn(51), "INSERT INTO t VALUES (" + std::to_string(i) + ")");
    ASSERT_EQ(XA_OK, End(x, 51));
    int rc = Prepare(x, 51);
    if (i < 2) {
      EXPECT_EQ(XA_OK, rc);
      done.push_back(x);
    } else {
      EXPECT_GE(rc, XA_RBBASE);
      EXPECT_LE(rc, XA_RBEND);
      EXPECT_NE(std::string::npos, pgsql::LastError(51).find("max_prepared_transactions"));
    }
  }
  EXPECT_EQ("2", CountPrepared(admin));
  for (const XID& x : done) EXPECT_EQ(XA_OK, Rollback(x, 51));
  EXPECT_EQ("0", Exec(admin, "SELECT count(*) FROM t"));
  EXPECT_EQ("0", CountPrepared(admin));
  Close(51);
  PQfinish(admin);
}

TEST_F(PgRmTest, ChildKilledAfterPrepareIsRecoveredAndCommittedByAnotherProcess) {
  XID x = MakeXid("child-prepared", "b");
  int fds[2];
  ASSERT_EQ(0, ::pipe(fds));
  pid_t pid = ForkChild();
  if (pid == 0) {
    // A fresh process: its own connection.
    if (Open(61, db_.conninfo()) != XA_OK || Start(x, 61) != XA_OK) ::_exit(1);
    PQclear(PQexec(xatm_pgsql_conn(61), "UPDATE acct SET v = 77 WHERE id = 7"));
    if (End(x, 61) != XA_OK || Prepare(x, 61) != XA_OK) ::_exit(2);
    if (::write(fds[1], "p", 1) != 1) ::_exit(3);
    ::pause();
    ::_exit(0);
  }
  ::close(fds[1]);
  char c = 0;
  ASSERT_EQ(1, ::read(fds[0], &c, 1));
  ::kill(pid, SIGKILL);
  int status;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  EXPECT_EQ("100", V(7));
  std::vector<XID> found = RecoverAll(1);
  ASSERT_TRUE(Contains(found, x));
  ASSERT_EQ(XA_OK, Commit(x, 1)) << pgsql::LastError(1);
  EXPECT_EQ("77", V(7));
}

TEST(PgRmRestart, PreparedBranchSurvivesImmediateRestartAndTheOldConnectionRecovers) {
  OwnCluster c;
  PGconn* admin = ConnectOrDie(c.conninfo());
  Exec(admin, "CREATE TABLE t (id int PRIMARY KEY, v int)");
  Exec(admin, "INSERT INTO t VALUES (1, 1)");
  PQfinish(admin);
  ASSERT_EQ(XA_OK, Open(71, c.conninfo()));
  XID x = MakeXid("survives-restart", "b");
  ASSERT_EQ(XA_OK, Start(x, 71));
  Exec(xatm_pgsql_conn(71), "UPDATE t SET v = 2 WHERE id = 1");
  ASSERT_EQ(XA_OK, End(x, 71));
  ASSERT_EQ(XA_OK, Prepare(x, 71));
  c.Restart("immediate");
  // The old connection is dead though libpq does not know yet: the first call
  // reports the lost connection, and the RM reconnects for the next one.
  EXPECT_EQ(XAER_RMFAIL, Commit(x, 71)) << pgsql::LastError(71);
  std::vector<XID> found = RecoverAll(71);
  ASSERT_TRUE(Contains(found, x));
  ASSERT_EQ(XA_OK, Commit(x, 71)) << pgsql::LastError(71);
  EXPECT_EQ(XAER_NOTA, Commit(x, 71));
  admin = ConnectOrDie(c.conninfo());
  EXPECT_EQ("2", Exec(admin, "SELECT v FROM t WHERE id = 1"));
  PQfinish(admin);
  Close(71);
}

TEST_F(PgRmTest, ConnectionKilledDuringPrepareIsResolvedNotGuessed) {
  // A deferred trigger makes PREPARE take a while; another session kills the
  // backend in the middle of it.
  Exec(admin_, R"(CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
                  $$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$)");
  Exec(admin_, "CREATE CONSTRAINT TRIGGER slow AFTER UPDATE ON acct DEFERRABLE INITIALLY DEFERRED "
               "FOR EACH ROW EXECUTE FUNCTION slow()");
  XID x = MakeXid("killed-in-prepare", "b");
  ASSERT_EQ(XA_OK, Start(x, 1));
  const std::string pid = Sql(1, "SELECT pg_backend_pid()");
  Sql(1, "UPDATE acct SET v = 5 WHERE id = 5");
  ASSERT_EQ(XA_OK, End(x, 1));
  std::atomic<bool> killed{false};
  std::thread killer([&] {
    PGconn* k = ConnectOrDie(db_.conninfo());
    for (int i = 0; i < 500 && !killed; ++i) {
      if (Exec(k, "SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid +
                      " AND query LIKE 'PREPARE TRANSACTION%' AND state = 'active'") == "1") {
        Exec(k, "SELECT pg_terminate_backend(" + pid + ")");
        killed = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    PQfinish(k);
  });
  int rc = Prepare(x, 1);
  killer.join();
  ASSERT_TRUE(killed);
  EXPECT_EQ(XA_RBCOMMFAIL, rc) << pgsql::LastError(1);
  EXPECT_EQ("0", Prepared());
  EXPECT_EQ("100", V(5));
  // The RM reconnected: the next branch works on a new backend.
  XID y = MakeXid("after-kill", "b");
  ASSERT_EQ(XA_OK, Start(y, 1)) << pgsql::LastError(1);
  EXPECT_NE(pid, Sql(1, "SELECT pg_backend_pid()"));
  ASSERT_EQ(XA_OK, End(y, 1));
  EXPECT_EQ(XA_RDONLY, Prepare(y, 1));
}

TEST_F(PgRmTest, LostIdleConnectionIsRmfailOnceThenReopened) {
  const std::string pid = Sql(1, "SELECT pg_backend_pid()");
  Exec(admin_, "SELECT pg_terminate_backend(" + pid + ")");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  XID x = MakeXid("after-loss", "b");
  EXPECT_EQ(XAER_RMFAIL, Start(x, 1));
  ASSERT_EQ(XA_OK, Start(x, 1)) << pgsql::LastError(1);
  Sql(1, "UPDATE acct SET v = 9 WHERE id = 9");
  ASSERT_EQ(XA_OK, End(x, 1));
  ASSERT_EQ(XA_OK, Commit(x, 1, TMONEPHASE));
  EXPECT_EQ("9", V(9));
}

TEST_F(PgRmTest, ConnectionLostInsideABranchMakesItRollbackOnly) {
  XID x = MakeXid("lost-inside", "b");
  ASSERT_EQ(XA_OK, Start(x, 1));
  const std::string pid = Sql(1, "SELECT pg_backend_pid()");
  Sql(1, "UPDATE acct SET v = 1 WHERE id = 1");
  Exec(admin_, "SELECT pg_terminate_backend(" + pid + ")");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  PQclear(PQexec(xatm_pgsql_conn(1), "SELECT 1"));  // the application notices
  EXPECT_EQ(XA_RBCOMMFAIL, End(x, 1));
  EXPECT_EQ(XA_RBCOMMFAIL, Prepare(x, 1));
  EXPECT_EQ("100", V(1));
}

}  // namespace
}  // namespace xtm::test
