// One XA conformance suite, run against every resource manager of xatm on a
// real server or file: every call in every state of the X/Open XA state
// tables (S0 no branch, S1 active, S2 idle, S3 prepared, S4 rollback-only,
// plus the suspended association), the flags the spec allows and the ones it
// does not, and the return codes it prescribes. Where the spec leaves a
// choice, the RMs make the same one (docs/architecture.md, "XA conformance").
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/mysql_server.h"
#include "support/pg_cluster.h"
#include "support/temp_dir.h"
#include "xatm/rm_mysql.h"
#include "xatm/rm_pgsql.h"
#include "xatm/rm_sqlite.h"

namespace xtm::test {
namespace {

std::atomic<int> g_rmid{7000};

// One RM under test: its switch, what xa_open gets, and a way to write and
// count rows of table t through the thread's native connection.
class Target {
 public:
  virtual ~Target() = default;
  virtual xa_switch_t* sw() = 0;
  virtual std::string info() = 0;
  virtual bool Write(int rmid) = 0;  // one row into t, in the thread's branch
  virtual bool Read(int rmid) = 0;   // a SELECT of t, in the thread's branch
  virtual int Rows() = 0;            // committed rows of t, read from outside
  // SQLite has no prepared state of its own: a prepared branch is the open
  // transaction of its connection, which can start no other branch until
  // that one is finished (xa_start answers XAER_RMERR, saying so).
  virtual bool PreparedBranchKeepsTheConnection() const { return false; }
};

class PgTarget : public Target {
 public:
  PgTarget() {
    PGconn* c = ConnectOrDie(db_.conninfo());
    Exec(c, "CREATE TABLE t (v int)");
    PQfinish(c);
  }
  xa_switch_t* sw() override { return &xatm_pgsql_switch; }
  std::string info() override { return db_.conninfo(); }
  bool Write(int rmid) override { return Ok(xatm_pgsql_conn(rmid), "INSERT INTO t VALUES (1)"); }
  bool Read(int rmid) override { return Ok(xatm_pgsql_conn(rmid), "SELECT * FROM t"); }
  int Rows() override {
    PGconn* c = ConnectOrDie(db_.conninfo());
    const int n = std::stoi(Exec(c, "SELECT count(*) FROM t"));
    PQfinish(c);
    return n;
  }

 private:
  static bool Ok(PGconn* c, const char* sql) {
    PGresult* r = PQexec(c, sql);
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    return ok;
  }
  ScratchDb db_;
};

class SqliteTarget : public Target {
 public:
  SqliteTarget() : path_(dir_ / "t.db") {
    sqlite3* db = nullptr;
    sqlite3_open(path_.c_str(), &db);
    sqlite3_exec(db, "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v int)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  xa_switch_t* sw() override { return &xatm_sqlite_switch; }
  bool PreparedBranchKeepsTheConnection() const override { return true; }
  std::string info() override { return "path=" + path_; }
  bool Write(int rmid) override {
    // A key of its own: branches prepared on closed connections replay their
    // changes at commit, and two inserts of one key would conflict there.
    return sqlite3_exec(xatm_sqlite_db(rmid), "INSERT INTO t (id, v) VALUES (abs(random() % 1000000000000), 1)",
                        nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  bool Read(int rmid) override {
    return sqlite3_exec(xatm_sqlite_db(rmid), "SELECT * FROM t", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  int Rows() override {
    sqlite3* db = nullptr;
    sqlite3_open(path_.c_str(), &db);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, nullptr);
    const int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
  }

 private:
  TempDir dir_;
  std::string path_;
};

class MysqlTarget : public Target {
 public:
  MysqlTarget() {
    MYSQL* my = MysqlConnectOrDie(Mysql().socket, db_.name());
    MysqlExec(my, "CREATE TABLE t (v int) ENGINE=InnoDB");
    mysql_close(my);
  }
  xa_switch_t* sw() override { return &xatm_mysql_switch; }
  std::string info() override { return db_.info(); }
  bool Write(int rmid) override { return mysql_query(xatm_mysql_conn(rmid), "INSERT INTO t VALUES (1)") == 0; }
  bool Read(int rmid) override {
    MYSQL* my = xatm_mysql_conn(rmid);
    if (mysql_query(my, "SELECT * FROM t") != 0) return false;
    mysql_free_result(mysql_store_result(my));
    return true;
  }
  int Rows() override {
    MYSQL* my = MysqlConnectOrDie(Mysql().socket, db_.name());
    const int n = std::stoi(MysqlExec(my, "SELECT count(*) FROM t"));
    mysql_close(my);
    return n;
  }

 private:
  ScratchMysqlDb db_;
};

struct Kind {
  const char* name;
  std::function<std::unique_ptr<Target>()> make;
  bool async = false;  // xa_prepare and xa_commit take TMASYNC (xa_complete answers)
};
// Its name in the test listings (not its bytes).
void PrintTo(const Kind& k, std::ostream* os) { *os << k.name; }

class XaConformance : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    target_ = GetParam().make();
    rmid_ = g_rmid++;
    info_ = target_->info();
    ASSERT_EQ(XA_OK, sw().xa_open_entry(info_.data(), rmid_, TMNOFLAGS));
  }
  void TearDown() override {
    // Whatever a test left: rolled back, so that nothing stays prepared.
    for (XID& x : left_) sw().xa_rollback_entry(&x, rmid_, TMNOFLAGS);
    sw().xa_close_entry(info_.data(), rmid_, TMNOFLAGS);
  }
  xa_switch_t& sw() { return *target_->sw(); }
  // A fresh xid (binary gtrid with a NUL, 0xff and a quote; bqual "b").
  XID NewXid(long format = 4711, std::string bqual = "b") {
    static std::atomic<int> n{0};
    std::string g = std::string("conf\0\xff'", 7) + std::to_string(rmid_) + "-" + std::to_string(n++);
    XID x{};
    x.formatID = format;
    x.gtrid_length = static_cast<long>(g.size());
    x.bqual_length = static_cast<long>(bqual.size());
    std::memcpy(x.data, g.data(), g.size());
    std::memcpy(x.data + g.size(), bqual.data(), bqual.size());
    left_.push_back(x);
    return x;
  }
  int Start(XID& x, long flags = TMNOFLAGS) { return sw().xa_start_entry(&x, rmid_, flags); }
  int End(XID& x, long flags = TMSUCCESS) { return sw().xa_end_entry(&x, rmid_, flags); }
  int Prepare(XID& x, long flags = TMNOFLAGS) { return sw().xa_prepare_entry(&x, rmid_, flags); }
  int Commit(XID& x, long flags = TMNOFLAGS) { return sw().xa_commit_entry(&x, rmid_, flags); }
  int Rollback(XID& x, long flags = TMNOFLAGS) { return sw().xa_rollback_entry(&x, rmid_, flags); }
  int Forget(XID& x, long flags = TMNOFLAGS) { return sw().xa_forget_entry(&x, rmid_, flags); }
  // S3: a branch that wrote one row, prepared.
  XID Prepared() {
    XID x = NewXid();
    EXPECT_EQ(XA_OK, Start(x));
    EXPECT_TRUE(target_->Write(rmid_));
    EXPECT_EQ(XA_OK, End(x));
    EXPECT_EQ(XA_OK, Prepare(x));
    return x;
  }
  // Every xid the RM reports prepared (one scan).
  std::vector<XID> Scan() {
    std::vector<XID> all, batch(8);
    long flags = TMSTARTRSCAN;
    for (;;) {
      const int n = sw().xa_recover_entry(batch.data(), static_cast<long>(batch.size()), rmid_, flags);
      EXPECT_GE(n, 0);
      if (n <= 0) break;
      all.insert(all.end(), batch.begin(), batch.begin() + n);
      if (n < static_cast<int>(batch.size())) break;
      flags = TMNOFLAGS;
    }
    sw().xa_recover_entry(batch.data(), 0, rmid_, TMENDRSCAN);
    return all;
  }
  bool Listed(const XID& x) {
    for (const XID& y : Scan()) {
      if (y.formatID == x.formatID && y.gtrid_length == x.gtrid_length && y.bqual_length == x.bqual_length &&
          std::memcmp(y.data, x.data, static_cast<size_t>(x.gtrid_length + x.bqual_length)) == 0) {
        return true;
      }
    }
    return false;
  }

  std::unique_ptr<Target> target_;
  int rmid_ = 0;
  std::string info_;
  std::vector<XID> left_;
};

// ---- arguments and flags, in any state ----------------------------------

TEST_P(XaConformance, AsynchronousCallsAreRefusedWithXaerAsync) {
  XID x = NewXid();
  EXPECT_EQ(XAER_ASYNC, Start(x, TMASYNC));
  EXPECT_EQ(XA_OK, Start(x));
  EXPECT_EQ(XAER_ASYNC, End(x, TMSUCCESS | TMASYNC));
  EXPECT_EQ(XA_OK, End(x));
  if (!GetParam().async) {
    EXPECT_EQ(XAER_ASYNC, Prepare(x, TMASYNC));
    EXPECT_EQ(XAER_ASYNC, Commit(x, TMASYNC));
  }
  EXPECT_EQ(XAER_ASYNC, Rollback(x, TMASYNC));
  EXPECT_EQ(XAER_ASYNC, Forget(x, TMASYNC));
  XID buf[2];
  EXPECT_EQ(XAER_ASYNC, sw().xa_recover_entry(buf, 2, rmid_, TMSTARTRSCAN | TMASYNC));
  int ret = 0;
  EXPECT_EQ(XAER_ASYNC, sw().xa_complete_entry(&ret, &ret, rmid_, TMASYNC));
  EXPECT_EQ(XAER_PROTO, sw().xa_complete_entry(&ret, &ret, rmid_, TMNOFLAGS));  // nothing outstanding
  EXPECT_EQ(XA_OK, Rollback(x));
}

// Where xa_prepare and xa_commit take TMASYNC: a handle at once, the answer
// from xa_complete (waiting, or TMNOWAIT polled, or TMMULTIPLE), every other
// call refused with XAER_ASYNC meanwhile, and a handle completes once.
TEST_P(XaConformance, AnAsynchronousPrepareOrCommitIsCompletedByXaComplete) {
  if (!GetParam().async) GTEST_SKIP() << GetParam().name << " refuses TMASYNC (tested above)";
  XID x = NewXid();
  ASSERT_EQ(XA_OK, Start(x));
  ASSERT_TRUE(target_->Write(rmid_));
  ASSERT_EQ(XA_OK, End(x));
  int h = Prepare(x, TMASYNC);
  ASSERT_GE(h, 0);
  EXPECT_EQ(XAER_ASYNC, Commit(x));
  EXPECT_EQ(XAER_ASYNC, Rollback(x));
  int ret = -100, wrong = h + 1;
  EXPECT_EQ(XAER_INVAL, sw().xa_complete_entry(&wrong, &ret, rmid_, TMNOFLAGS));
  int rc;
  while ((rc = sw().xa_complete_entry(&h, &ret, rmid_, TMNOWAIT)) == XA_RETRY) {
  }
  EXPECT_EQ(XA_OK, rc);
  EXPECT_EQ(XA_OK, ret);
  EXPECT_EQ(XAER_PROTO, sw().xa_complete_entry(&h, &ret, rmid_, TMNOFLAGS));  // completed once
  EXPECT_TRUE(Listed(x));
  EXPECT_EQ(0, target_->Rows());
  const int hc = Commit(x, TMASYNC);
  ASSERT_GE(hc, 0);
  EXPECT_EQ(XAER_ASYNC, Start(x));
  int hc2 = hc;
  EXPECT_EQ(XA_OK, sw().xa_complete_entry(&hc2, &ret, rmid_, TMNOFLAGS));
  EXPECT_EQ(XA_OK, ret);
  EXPECT_EQ(1, target_->Rows());
  EXPECT_FALSE(Listed(x));
  // Committing it again: the outcome (no such branch) through xa_complete.
  int again = Commit(x, TMASYNC);
  ASSERT_GE(again, 0);
  EXPECT_EQ(XA_OK, sw().xa_complete_entry(&again, &ret, rmid_, TMNOFLAGS));
  EXPECT_EQ(XAER_NOTA, ret);

  // A branch that only read votes read-only through xa_complete too; TMMULTIPLE
  // names the handle it completed.
  XID r = NewXid();
  ASSERT_EQ(XA_OK, Start(r));
  ASSERT_EQ(XA_OK, End(r));
  const int hr = Prepare(r, TMASYNC);
  ASSERT_GE(hr, 0);
  int any = -1;
  EXPECT_EQ(XA_OK, sw().xa_complete_entry(&any, &ret, rmid_, TMMULTIPLE));
  EXPECT_EQ(hr, any);
  EXPECT_EQ(XA_RDONLY, ret);
  EXPECT_FALSE(Listed(r));

  // A vote known before anything is sent (a prepare in the wrong state) comes
  // through xa_complete as well.
  XID n = NewXid();
  ASSERT_EQ(XA_OK, Start(n));
  const int hn = Prepare(n, TMASYNC);  // not ended
  ASSERT_GE(hn, 0);
  int hn2 = hn;
  EXPECT_EQ(XA_OK, sw().xa_complete_entry(&hn2, &ret, rmid_, TMNOFLAGS));
  EXPECT_EQ(XAER_PROTO, ret);
  EXPECT_EQ(XA_OK, End(n));
  EXPECT_EQ(XA_OK, Rollback(n));
}

TEST_P(XaConformance, MalformedXidsAndFlagsAreXaerInval) {
  XID bad = NewXid();
  bad.gtrid_length = 0;
  EXPECT_EQ(XAER_INVAL, Start(bad));
  bad.gtrid_length = 65;
  EXPECT_EQ(XAER_INVAL, Start(bad));
  XID null = NewXid();
  null.formatID = -1;
  EXPECT_EQ(XAER_INVAL, Start(null));
  EXPECT_EQ(XAER_INVAL, sw().xa_start_entry(nullptr, rmid_, TMNOFLAGS));
  XID x = NewXid();
  EXPECT_EQ(XAER_INVAL, Start(x, TMJOIN | TMRESUME));
  EXPECT_EQ(XA_OK, Start(x));
  EXPECT_EQ(XAER_INVAL, End(x, TMSUCCESS | TMFAIL));   // exactly one of them
  EXPECT_EQ(XAER_INVAL, End(x, TMNOFLAGS));
  EXPECT_EQ(XA_OK, End(x));
  EXPECT_EQ(XAER_INVAL, Prepare(x, TMONEPHASE));
  EXPECT_EQ(XAER_INVAL, Rollback(x, TMONEPHASE));
  EXPECT_EQ(XA_OK, Rollback(x));
  XID buf[2];
  EXPECT_EQ(XAER_INVAL, sw().xa_recover_entry(buf, -1, rmid_, TMSTARTRSCAN));
  EXPECT_EQ(XAER_INVAL, sw().xa_recover_entry(nullptr, 2, rmid_, TMSTARTRSCAN));
  EXPECT_EQ(XAER_INVAL, sw().xa_recover_entry(buf, 2, rmid_, TMONEPHASE));
}

TEST_P(XaConformance, EveryCallBeforeXaOpenIsXaerProto) {
  const int other = g_rmid++;
  XID x = NewXid();
  XID buf[2];
  EXPECT_EQ(XAER_PROTO, sw().xa_start_entry(&x, other, TMNOFLAGS));
  EXPECT_EQ(XAER_PROTO, sw().xa_end_entry(&x, other, TMSUCCESS));
  EXPECT_EQ(XAER_PROTO, sw().xa_prepare_entry(&x, other, TMNOFLAGS));
  EXPECT_EQ(XAER_PROTO, sw().xa_commit_entry(&x, other, TMNOFLAGS));
  EXPECT_EQ(XAER_PROTO, sw().xa_rollback_entry(&x, other, TMNOFLAGS));
  EXPECT_EQ(XAER_PROTO, sw().xa_forget_entry(&x, other, TMNOFLAGS));
  EXPECT_EQ(XAER_PROTO, sw().xa_recover_entry(buf, 2, other, TMSTARTRSCAN));
  EXPECT_EQ(XA_OK, sw().xa_close_entry(info_.data(), other, TMNOFLAGS));  // closing what is not open is fine
  EXPECT_EQ(XAER_INVAL, sw().xa_open_entry(info_.data(), other, TMJOIN));
  EXPECT_EQ(XAER_ASYNC, sw().xa_open_entry(info_.data(), other, TMASYNC));
  EXPECT_EQ(XA_OK, sw().xa_open_entry(info_.data(), rmid_, TMNOFLAGS));  // open twice: still open
}

// ---- S0: no branch ------------------------------------------------------

TEST_P(XaConformance, UnknownXidsAreXaerNota) {
  XID x = NewXid();
  EXPECT_EQ(XAER_NOTA, End(x));
  EXPECT_EQ(XAER_NOTA, Prepare(x));
  EXPECT_EQ(XAER_NOTA, Commit(x));
  EXPECT_EQ(XAER_NOTA, Commit(x, TMONEPHASE));
  EXPECT_EQ(XAER_NOTA, Rollback(x));
  EXPECT_EQ(XAER_NOTA, Forget(x));
  EXPECT_EQ(XAER_NOTA, Start(x, TMRESUME));
  EXPECT_EQ(XAER_NOTA, Start(x, TMJOIN));
}

// ---- S1: active (associated) ----------------------------------------------

TEST_P(XaConformance, AnActiveBranchMustBeEndedFirst) {
  XID x = NewXid();
  ASSERT_EQ(XA_OK, Start(x));
  ASSERT_TRUE(target_->Write(rmid_));
  EXPECT_EQ(XAER_DUPID, Start(x));  // the same xid again
  XID y = NewXid();
  EXPECT_EQ(XAER_PROTO, Start(y));  // the thread is associated with x
  EXPECT_EQ(XAER_PROTO, Prepare(x));
  EXPECT_EQ(XAER_PROTO, Commit(x, TMONEPHASE));
  EXPECT_EQ(XAER_PROTO, Commit(x));
  EXPECT_EQ(XAER_PROTO, Rollback(x));
  EXPECT_EQ(XAER_PROTO, sw().xa_close_entry(info_.data(), rmid_, TMNOFLAGS));
  EXPECT_EQ(XA_OK, End(x));
  EXPECT_EQ(XAER_PROTO, End(x));  // not associated any more
  EXPECT_EQ(XA_OK, Rollback(x));
  EXPECT_EQ(0, target_->Rows());
}

TEST_P(XaConformance, SuspendAndResumeKeepTheWork) {
  XID x = NewXid();
  ASSERT_EQ(XA_OK, Start(x));
  ASSERT_TRUE(target_->Write(rmid_));
  EXPECT_EQ(XA_OK, End(x, TMSUSPEND));
  EXPECT_EQ(XAER_PROTO, End(x, TMSUSPEND));  // already suspended
  EXPECT_EQ(XAER_PROTO, Prepare(x));         // still associated (suspended)
  EXPECT_EQ(XAER_PROTO, Start(x, TMJOIN));   // TMJOIN needs an ended branch
  EXPECT_EQ(XA_OK, Start(x, TMRESUME));
  EXPECT_EQ(XAER_PROTO, Start(x, TMRESUME));  // not suspended
  EXPECT_EQ(XA_OK, End(x));
  EXPECT_EQ(XA_OK, Start(x, TMJOIN));  // joins the ended branch again
  ASSERT_TRUE(target_->Write(rmid_));
  EXPECT_EQ(XA_OK, End(x));
  EXPECT_EQ(XA_OK, Commit(x, TMONEPHASE));
  EXPECT_EQ(2, target_->Rows());
}

// ---- S2: idle (ended) -------------------------------------------------------

TEST_P(XaConformance, AnIdleBranchCommitsInOnePhaseOrRollsBack) {
  XID x = NewXid();
  ASSERT_EQ(XA_OK, Start(x));
  ASSERT_TRUE(target_->Write(rmid_));
  ASSERT_EQ(XA_OK, End(x));
  EXPECT_EQ(XAER_PROTO, Commit(x));  // not prepared: needs TMONEPHASE
  EXPECT_EQ(XAER_PROTO, Forget(x));  // not heuristically completed
  EXPECT_EQ(XA_OK, Commit(x, TMONEPHASE));
  EXPECT_EQ(XAER_NOTA, Commit(x, TMONEPHASE));  // gone
  EXPECT_EQ(1, target_->Rows());
  XID y = NewXid();
  ASSERT_EQ(XA_OK, Start(y));
  ASSERT_TRUE(target_->Write(rmid_));
  ASSERT_EQ(XA_OK, End(y));
  EXPECT_EQ(XA_OK, Rollback(y));
  EXPECT_EQ(XAER_NOTA, Rollback(y));
  EXPECT_EQ(1, target_->Rows());
}

TEST_P(XaConformance, AReadOnlyBranchVotesXaRdonlyAndIsGone) {
  XID x = NewXid();
  ASSERT_EQ(XA_OK, Start(x));
  ASSERT_TRUE(target_->Read(rmid_));
  ASSERT_EQ(XA_OK, End(x));
  EXPECT_EQ(XA_RDONLY, Prepare(x));
  EXPECT_EQ(XAER_NOTA, Commit(x));
  EXPECT_FALSE(Listed(x));
}

// ---- S4: rollback-only ----------------------------------------------------

TEST_P(XaConformance, TmfailMakesTheBranchRollbackOnly) {
  XID x = NewXid();
  ASSERT_EQ(XA_OK, Start(x));
  ASSERT_TRUE(target_->Write(rmid_));
  const int rc = End(x, TMFAIL);
  EXPECT_TRUE(rc >= XA_RBBASE && rc <= XA_RBEND) << rc;
  const int again = Prepare(x);
  EXPECT_TRUE(again >= XA_RBBASE && again <= XA_RBEND) << again;  // the rollback, reported once more
  EXPECT_EQ(XAER_NOTA, Rollback(x));                                 // and forgotten
  EXPECT_EQ(0, target_->Rows());
  XID y = NewXid();
  ASSERT_EQ(XA_OK, Start(y));
  ASSERT_TRUE(target_->Write(rmid_));
  End(y, TMFAIL);
  const int one = Commit(y, TMONEPHASE);
  EXPECT_TRUE(one >= XA_RBBASE && one <= XA_RBEND) << one;
  EXPECT_EQ(0, target_->Rows());
}

// ---- S3: prepared -----------------------------------------------------------

TEST_P(XaConformance, APreparedBranchIsListedAndCommitsOnce) {
  XID x = Prepared();
  EXPECT_TRUE(Listed(x));
  EXPECT_EQ(XAER_PROTO, Prepare(x));               // already prepared
  EXPECT_EQ(XAER_PROTO, Commit(x, TMONEPHASE));    // prepared: two-phase commit only
  EXPECT_EQ(XAER_PROTO, Forget(x));                // prepared, not heuristically completed
  EXPECT_EQ(0, target_->Rows());
  EXPECT_EQ(XA_OK, Commit(x));
  EXPECT_EQ(1, target_->Rows());
  EXPECT_EQ(XAER_NOTA, Commit(x));
  EXPECT_EQ(XAER_NOTA, Rollback(x));
  EXPECT_FALSE(Listed(x));
}

TEST_P(XaConformance, APreparedBranchRollsBack) {
  XID x = Prepared();
  EXPECT_EQ(XA_OK, Rollback(x));
  EXPECT_EQ(XAER_NOTA, Rollback(x));
  EXPECT_EQ(XAER_NOTA, Commit(x));
  EXPECT_EQ(0, target_->Rows());
}

// The thread may start another branch while one is prepared, and finish the
// prepared one afterwards (SQLite: only once the prepared one is finished).
TEST_P(XaConformance, AnotherBranchMayStartWhileOneIsPrepared) {
  XID x = Prepared();
  XID y = NewXid();
  if (target_->PreparedBranchKeepsTheConnection()) {
    EXPECT_EQ(XAER_RMERR, Start(y));
    EXPECT_EQ(XA_OK, Commit(x));
    ASSERT_EQ(XA_OK, Start(y));
  } else {
    ASSERT_EQ(XA_OK, Start(y));
  }
  ASSERT_TRUE(target_->Write(rmid_));
  ASSERT_EQ(XA_OK, End(y));
  ASSERT_EQ(XA_OK, Commit(y, TMONEPHASE));
  if (!target_->PreparedBranchKeepsTheConnection()) {
    EXPECT_EQ(XA_OK, Commit(x));
  }
  EXPECT_EQ(2, target_->Rows());
}

// A branch prepared on another thread, whose connection then closed, is
// committed from this one (recovery's case).
TEST_P(XaConformance, ABranchPreparedOnAClosedConnectionIsFinishedFromAnother) {
  XID x = NewXid();
  std::thread([&] {
    const int rmid = rmid_;  // the same rmid, on this thread's own connection
    EXPECT_EQ(XA_OK, sw().xa_open_entry(info_.data(), rmid, TMNOFLAGS));
    EXPECT_EQ(XA_OK, Start(x));
    EXPECT_TRUE(target_->Write(rmid));
    EXPECT_EQ(XA_OK, End(x));
    EXPECT_EQ(XA_OK, Prepare(x));
    EXPECT_EQ(XA_OK, sw().xa_close_entry(info_.data(), rmid, TMNOFLAGS));
  }).join();
  EXPECT_TRUE(Listed(x));
  EXPECT_EQ(0, target_->Rows());
  EXPECT_EQ(XA_OK, Commit(x));
  EXPECT_EQ(1, target_->Rows());
  EXPECT_EQ(XAER_NOTA, Commit(x));
}

// ---- xa_recover: a cursor -------------------------------------------------

TEST_P(XaConformance, RecoverIsACursorOverThePreparedBranches) {
  std::vector<XID> mine;
  for (int i = 0; i < 3; ++i) {
    mine.push_back(NewXid());
    std::thread([&] {
      EXPECT_EQ(XA_OK, sw().xa_open_entry(info_.data(), rmid_, TMNOFLAGS));
      EXPECT_EQ(XA_OK, Start(mine.back()));
      EXPECT_TRUE(target_->Write(rmid_));
      EXPECT_EQ(XA_OK, End(mine.back()));
      EXPECT_EQ(XA_OK, Prepare(mine.back()));
      EXPECT_EQ(XA_OK, sw().xa_close_entry(info_.data(), rmid_, TMNOFLAGS));
    }).join();
  }
  XID buf[2];
  EXPECT_EQ(XAER_INVAL, sw().xa_recover_entry(buf, 2, rmid_, TMNOFLAGS));  // no scan open
  int total = 0;
  int n = sw().xa_recover_entry(buf, 2, rmid_, TMSTARTRSCAN);
  ASSERT_EQ(2, n);
  total += n;
  while ((n = sw().xa_recover_entry(buf, 2, rmid_, TMNOFLAGS)) > 0) total += n;
  EXPECT_EQ(0, n);
  EXPECT_GE(total, 3);
  EXPECT_EQ(0, sw().xa_recover_entry(buf, 2, rmid_, TMENDRSCAN));  // at the end: nothing more
  EXPECT_EQ(XAER_INVAL, sw().xa_recover_entry(buf, 2, rmid_, TMNOFLAGS));  // closed
  // Start and end in one call.
  EXPECT_GE(sw().xa_recover_entry(buf, 2, rmid_, TMSTARTRSCAN | TMENDRSCAN), 2);
  EXPECT_EQ(XAER_INVAL, sw().xa_recover_entry(buf, 2, rmid_, TMNOFLAGS));
  for (XID& x : mine) EXPECT_EQ(XA_OK, Commit(x));
}

// Any xid round-trips byte for byte: binary gtrid (NUL, 0xff, a quote), an
// empty or a 64-byte bqual, formatID 0 or the largest.
TEST_P(XaConformance, AnyXidRoundTripsThroughRecover) {
  for (long format : {0L, 1L, 2147483647L}) {
    for (const std::string& bqual : {std::string(), std::string(64, '\xfe'), std::string("\0q'", 3)}) {
      XID x = NewXid(format, bqual);
      ASSERT_EQ(XA_OK, Start(x));
      ASSERT_TRUE(target_->Write(rmid_));
      ASSERT_EQ(XA_OK, End(x));
      ASSERT_EQ(XA_OK, Prepare(x));
      EXPECT_TRUE(Listed(x)) << "formatID " << format << ", bqual of " << bqual.size() << " bytes";
      EXPECT_EQ(XA_OK, Commit(x));
    }
  }
  EXPECT_EQ(9, target_->Rows());
}

// xids that differ only in formatID are different branches: finishing one
// never finishes the other.
TEST_P(XaConformance, AnotherFormatIdIsAnotherBranch) {
  XID x = Prepared();
  XID other = x;
  other.formatID = x.formatID + 1;
  EXPECT_EQ(XAER_NOTA, Commit(other));
  EXPECT_EQ(XAER_NOTA, Rollback(other));
  EXPECT_TRUE(Listed(x));
  EXPECT_EQ(0, target_->Rows());
  EXPECT_EQ(XA_OK, Commit(x));
  EXPECT_EQ(1, target_->Rows());
}

const Kind kKinds[] = {
    {"postgresql", [] { return std::unique_ptr<Target>(new PgTarget); }, /*async=*/true},
    {"sqlite", [] { return std::unique_ptr<Target>(new SqliteTarget); }},
    {"mysql", [] { return std::unique_ptr<Target>(new MysqlTarget); }},
};

INSTANTIATE_TEST_SUITE_P(Rm, XaConformance, ::testing::ValuesIn(kKinds),
                         [](const ::testing::TestParamInfo<Kind>& k) { return std::string(k.param.name); });

}  // namespace
}  // namespace xtm::test
