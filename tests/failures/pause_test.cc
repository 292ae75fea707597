// Resolvers racing a commit point whose process is frozen exactly there.
//
// A client process is stopped (XATM_PAUSE_AT: SIGSTOP at a named point, as a
// long GC or VM pause would) right before or after one of its commit points.
// While it is frozen, every other party that may resolve the transaction
// acts: xatmd declares the session dead and takes it over, an operator tries
// to roll it back, the admin tool tries to recover. Each must either see the
// commit point durable or leave the transaction in doubt. Then the process
// wakes up and finishes; the final state must be atomic, and what xatm_commit
// returned must match it (XATM_OK only if every branch committed).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "core/gtrid.h"
#include "support/fork_child.h"
#include "support/temp_dir.h"
#include "support/xatmd_process.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

#ifdef XATM_FAULT_INJECTION

// What the frozen client does.
enum class Work {
  kTransfer,            // PostgreSQL and SQLite both write
  kSinglePreparedPg,    // xatm_prepare, then xatm_commit; only PostgreSQL writes
  kTwoPostgres,         // a row in each of two PostgreSQL databases
};

// A child frozen at a pause point: its pid, its transaction's gtrid (hex),
// and a pipe on which it writes what xatm_commit returned.
struct Frozen {
  pid_t pid = -1;
  std::string gtrid;
  int rc_fd = -1;
  // Wakes it, waits for it and returns its xatm_commit code.
  int Resume() {
    const int rc = ResumeChild(pid, rc_fd);
    pid = -1;
    return rc;
  }
  ~Frozen() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::kill(pid, SIGCONT);
      WaitChild(pid);
    }
  }
};

class PauseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path());
    socket_ = dir_ / "xatmd.sock";
    PGconn* c = ConnectOrDie(db2_.conninfo());
    Exec(c, "CREATE TABLE lrc_t (id bigint PRIMARY KEY)");
    PQfinish(c);
    c = ConnectOrDie(db_.conninfo());
    Exec(c, "CREATE TABLE lrc_t (id bigint PRIMARY KEY)");
    PQfinish(c);
  }

  // The bank's configuration with tm_lines in [tm] ("" for the defaults), a
  // second PostgreSQL database, and, if served, xatmd on a unix socket with
  // client_timeout_s = 1.
  std::string Config(const std::string& tm_lines, bool served, const std::string& name) {
    std::string text = ReadFileOrDie(bank_->WriteConfigFile(60, kEveryBranchPrepared));
    text = ReplaceEveryBranchPrepared(text, tm_lines);
    if (served) text.replace(text.find("[tm]\n") + 5, 0, "server = unix:" + socket_ + "\n");
    text.replace(text.find("log_level = warn"), 16, "log_level = info");
    text += "\n[rm.bank2]\ntype = postgresql\nconninfo = " + db2_.conninfo() + "\n";
    if (served) text += "\n[server]\nclient_timeout_s = 1\nrecovery_interval_s = 1\nmetrics = off\n";
    const std::string path = dir_ / name;
    WriteFileOrDie(path, text);
    return path;
  }
  void StartServer(const std::string& config) {
    server_ = std::make_unique<XatmdProcess>(config, dir_ / "xatmd.log");
    server_->Start();
  }
  std::string Cli() const { return std::string(XATM_CLI) + " --server unix:" + socket_ + " "; }

  // A child that does `work` as transfer `id` through config and freezes at
  // `point`; returned once it is stopped there.
  void FreezeAt(const std::string& config, const std::string& point, Work work, long id, Frozen* f) {
    int g[2], r[2];
    ASSERT_EQ(0, ::pipe(g));
    ASSERT_EQ(0, ::pipe(r));
    f->pid = ForkChild();
    if (f->pid == 0) {
      ::setenv("XATM_PAUSE_AT", point.c_str(), 1);
      xatm* tm = OpenOrExit(config, 10);
      xatm_tx* tx = nullptr;
      if (xatm_start(tm, &tx) != XATM_OK) ::_exit(11);
      XID x;
      xatm_tx_xid(tx, &x);
      if (::write(g[1], x.data, 20) != 20) ::_exit(12);
      int rc = XATM_OK;
      if (work == Work::kTwoPostgres) {
        const std::string ins = "INSERT INTO lrc_t VALUES (" + std::to_string(id) + ")";
        PQclear(PQexec(xatm_pgconn(tx, "bank"), ins.c_str()));
        PQclear(PQexec(xatm_pgconn(tx, "bank2"), ins.c_str()));
      } else if (work == Work::kSinglePreparedPg) {
        PGconn* pg = xatm_pgconn(tx, "bank");
        sqlite3* db = xatm_sqlite(tx, "ledger");
        sqlite3_exec(db, "SELECT count(*) FROM accounts", nullptr, nullptr, nullptr);  // reads only
        PQclear(PQexec(pg, ("INSERT INTO transfers VALUES (" + std::to_string(id) + ")").c_str()));
        rc = xatm_prepare(tx);
      } else {
        TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), id, 1, 2, 10);
      }
      if (rc == XATM_OK) rc = xatm_commit(tx);
      std::fprintf(stderr, "transfer %ld: xatm_commit %d %s\n", id, rc, rc ? xatm_errmsg(tm) : "");
      if (::write(r[1], &rc, sizeof rc) != sizeof rc) ::_exit(13);
      xatm_tx_free(tx);
      xatm_close(tm);
      ::_exit(0);
    }
    ::close(g[1]);
    ::close(r[1]);
    char gtrid[20];
    ASSERT_EQ(20, ::read(g[0], gtrid, 20));
    ::close(g[0]);
    f->gtrid = tm::ToHex(std::string(gtrid, 20));
    f->rc_fd = r[0];
    ASSERT_TRUE(WaitStopped(f->pid, 30)) << "the child did not stop at " << point;
  }

  // While the client is frozen: the server declares its session dead, takes
  // it over, and runs two more recovery passes.
  void LetTheServerTakeOver(int dead_before) {
    ASSERT_TRUE(WaitFor([&] { return server_->Count("declared dead") > dead_before; }, 20)) << server_->Log();
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // recovery_interval_s = 1
  }

  bool PgHas(const std::string& conninfo, long id) {
    PGconn* c = ConnectOrDie(conninfo);
    const bool yes = Exec(c, "SELECT count(*) FROM lrc_t WHERE id = " + std::to_string(id)) == "1";
    PQfinish(c);
    return yes;
  }
  int Prepared(const std::string& conninfo) {
    PGconn* c = ConnectOrDie(conninfo);
    const int n = std::stoi(Exec(c, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"));
    PQfinish(c);
    return n;
  }
  // Two PostgreSQL databases finished: neither holds a prepared branch
  // (waited for, up to 10 s, if `wait`), and transfer id is in both if
  // `committed`, else in neither.
  void ExpectTwoPostgresFinished(long id, bool committed, bool wait) {
    if (wait) {
      EXPECT_TRUE(WaitFor([&] { return Prepared(db_.conninfo()) == 0 && Prepared(db2_.conninfo()) == 0; }, 10))
          << server_->Log();
    }
    EXPECT_EQ(committed, PgHas(db_.conninfo(), id));
    EXPECT_EQ(committed, PgHas(db2_.conninfo(), id));
    EXPECT_EQ(0, Prepared(db_.conninfo()));
    EXPECT_EQ(0, Prepared(db2_.conninfo()));
  }
  // Atomic and finished: the transfer is on both sides or on neither, money
  // is conserved, and nothing is left prepared (the server's passes finish
  // what the client left).
  void ExpectAtomicAndFinished(long id, bool* committed) {
    ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0 && bank_->SqlitePrepared() == 0; }, 20))
        << server_->Log();
    const bool pg = bank_->PgTransfers().count(id) > 0, sq = bank_->SqliteTransfers().count(id) > 0;
    EXPECT_EQ(pg, sq) << "transfer " << id << " is on one side only";
    EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
    *committed = pg && sq;
  }

  ScratchDb db_, db2_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
  std::string socket_;
  std::unique_ptr<XatmdProcess> server_;
};

// The default: the SQLite branch commits last with the decision row. Frozen
// before that COMMIT, the client holds SQLite's write lock: the server cannot
// read "no row" under it, so the prepared PostgreSQL branch stays in doubt
// and an operator's rollback is refused. Woken, the client commits.
TEST_F(PauseTest, SqliteLastResourceFrozenBeforeItsCommitIsLeftInDoubtByEveryResolver) {
  StartServer(Config("", true, "xatmd.conf"));
  Frozen f;
  FreezeAt(dir_ / "xatmd.conf", "tm.lrc.before_last", Work::kTransfer, 1, &f);
  LetTheServerTakeOver(0);
  EXPECT_EQ(1, bank_->PgPrepared()) << server_->Log();  // left in doubt, not rolled back
  EXPECT_EQ(0u, bank_->SqliteTransfers().count(1));
  const ShellResult list = RunShell(Cli() + "list --json");
  EXPECT_NE(std::string::npos, list.out.find(f.gtrid)) << list.out;
  EXPECT_NE(std::string::npos, list.out.find("\"decision\":\"unknown\"")) << list.out;
  const ShellResult rb = RunShell(Cli() + "rollback " + f.gtrid + " --reason test");
  EXPECT_EQ(6, rb.code) << rb.out;
  EXPECT_NE(std::string::npos, rb.out.find("cannot be known now")) << rb.out;
  EXPECT_EQ(1, bank_->PgPrepared());
  EXPECT_EQ(XATM_OK, f.Resume()) << server_->Log();
  bool committed = false;
  ExpectAtomicAndFinished(1, &committed);
  EXPECT_TRUE(committed);
}

// Frozen right after the SQLite COMMIT: the decision row is durable, the
// server commits the PostgreSQL branch, and the operator's rollback is
// refused without --force.
TEST_F(PauseTest, SqliteLastResourceFrozenAfterItsCommitIsCommittedByTheServer) {
  StartServer(Config("", true, "xatmd.conf"));
  Frozen f;
  FreezeAt(dir_ / "xatmd.conf", "tm.lrc.after_last", Work::kTransfer, 2, &f);
  EXPECT_EQ(1u, bank_->SqliteTransfers().count(2));
  const ShellResult rb = RunShell(Cli() + "rollback " + f.gtrid + " --reason test");
  EXPECT_EQ(6, rb.code) << rb.out;
  EXPECT_NE(std::string::npos, rb.out.find("decision row is in ledger")) << rb.out;
  LetTheServerTakeOver(0);
  EXPECT_EQ(0, bank_->PgPrepared()) << server_->Log();
  EXPECT_EQ(1u, bank_->PgTransfers().count(2));
  EXPECT_EQ(XATM_OK, f.Resume()) << server_->Log();
  bool committed = false;
  ExpectAtomicAndFinished(2, &committed);
  EXPECT_TRUE(committed);
}

// Classic protocol, frozen with every branch prepared and no decision sent:
// the server rolls back; the woken client's COMMIT is refused (fenced), and
// its next transaction runs in a new session.
TEST_F(PauseTest, ClassicFrozenBeforeItsDecisionIsRolledBackAndTheLateCommitFenced) {
  StartServer(Config(kEveryBranchPrepared, true, "xatmd.conf"));
  Frozen f;
  FreezeAt(dir_ / "xatmd.conf", "tm.prepare.after_all", Work::kTransfer, 3, &f);
  LetTheServerTakeOver(0);
  EXPECT_EQ(0, bank_->PgPrepared()) << server_->Log();
  EXPECT_EQ(XATM_EFENCED, f.Resume()) << server_->Log();
  bool committed = true;
  ExpectAtomicAndFinished(3, &committed);
  EXPECT_FALSE(committed);
}

// Classic protocol, frozen right after its COMMIT record: the server commits
// what it can; the SQLite branch, whose transaction the frozen process holds,
// waits for it. Woken, the client finishes: XATM_OK.
TEST_F(PauseTest, ClassicFrozenAfterItsDecisionIsCommittedByBoth) {
  StartServer(Config(kEveryBranchPrepared, true, "xatmd.conf"));
  Frozen f;
  FreezeAt(dir_ / "xatmd.conf", "tm.commit.after_decision", Work::kTransfer, 4, &f);
  LetTheServerTakeOver(0);
  EXPECT_EQ(0, bank_->PgPrepared()) << server_->Log();
  EXPECT_EQ(1u, bank_->PgTransfers().count(4));
  EXPECT_EQ(1, bank_->SqlitePrepared());  // its lock is the frozen process's
  EXPECT_EQ(XATM_OK, f.Resume()) << server_->Log();
  bool committed = false;
  ExpectAtomicAndFinished(4, &committed);
  EXPECT_TRUE(committed);
}

// Two PostgreSQL databases, every branch prepared: the first database's
// PREPARE is sent (asynchronously, its answer unread) and the client freezes
// before sending the second's. No decision exists: the server rolls back
// what is prepared and ends the frozen sessions. Woken, the client reads a
// lost answer, finds its branch gone, and is told it was fenced.
TEST_F(PauseTest, ClassicFrozenBetweenItsOverlappedPreparesIsRolledBackEverywhere) {
  StartServer(Config(kEveryBranchPrepared, true, "xatmd.conf"));
  Frozen f;
  FreezeAt(dir_ / "xatmd.conf", "tm.prepare.before_branch:2", Work::kTwoPostgres, 8, &f);
  LetTheServerTakeOver(0);
  ExpectTwoPostgresFinished(8, /*committed=*/false, /*wait=*/true);
  EXPECT_EQ(XATM_EFENCED, f.Resume()) << server_->Log();
  ExpectTwoPostgresFinished(8, /*committed=*/false, /*wait=*/false);
}

// The same, frozen in phase two with the first database's COMMIT PREPARED
// sent (its answer unread) and the second's not: the decision is durable, so
// the server commits the second; woken, the client's own COMMIT finds it
// done (gone after an attempt of its own, with its decision durable): both
// committed, XATM_OK.
TEST_F(PauseTest, ClassicFrozenBetweenItsOverlappedCommitsIsCommittedEverywhere) {
  StartServer(Config(kEveryBranchPrepared, true, "xatmd.conf"));
  Frozen f;
  FreezeAt(dir_ / "xatmd.conf", "tm.commit.before_branch:2", Work::kTwoPostgres, 9, &f);
  LetTheServerTakeOver(0);
  ExpectTwoPostgresFinished(9, /*committed=*/true, /*wait=*/true);
  EXPECT_EQ(XATM_OK, f.Resume()) << server_->Log();
  ExpectTwoPostgresFinished(9, /*committed=*/true, /*wait=*/false);
}

// One prepared writer, no decision recorded, frozen before its COMMIT
// PREPARED: the server rolls it back. Woken, the client finds the branch gone
// after losing its connection; it may not take that for its own commit.
TEST_F(PauseTest, SinglePreparedWriterFrozenBeforeItsCommitIsNeverReportedCommitted) {
  StartServer(Config(kEveryBranchPrepared, true, "xatmd.conf"));
  Frozen f;
  FreezeAt(dir_ / "xatmd.conf", "tm.commit.before_branch", Work::kSinglePreparedPg, 5, &f);
  LetTheServerTakeOver(0);
  EXPECT_EQ(0, bank_->PgPrepared()) << server_->Log();
  const int rc = f.Resume();
  EXPECT_NE(XATM_OK, rc) << server_->Log();
  EXPECT_EQ(XATM_EUNKNOWN, rc);
  EXPECT_EQ(0u, bank_->PgTransfers().count(5));
  EXPECT_EQ(0, bank_->PgPrepared());
}

// A PostgreSQL last resource (two databases, last_resource_commit = true),
// frozen with its decision row written but not committed: the takeover ends
// its backend (registered by pid and start time), which aborts that
// transaction; the server's probe of the row then cannot race a commit.
TEST_F(PauseTest, PostgresLastResourceFrozenBeforeItsCommitIsRolledBackEverywhere) {
  StartServer(Config("last_resource_commit = true\n", true, "xatmd.conf"));
  Frozen f;
  FreezeAt(dir_ / "xatmd.conf", "tm.lrc.before_last", Work::kTwoPostgres, 6, &f);
  LetTheServerTakeOver(0);
  EXPECT_EQ(0, Prepared(db_.conninfo())) << server_->Log();
  EXPECT_EQ(XATM_EROLLEDBACK, f.Resume()) << server_->Log();
  EXPECT_FALSE(PgHas(db_.conninfo(), 6));
  EXPECT_FALSE(PgHas(db2_.conninfo(), 6));
  EXPECT_EQ(0, Prepared(db_.conninfo()));
}

// The same, frozen with the last resource's COMMIT sent and its answer not
// read: PostgreSQL commits it; the server finds the row and commits the other.
TEST_F(PauseTest, PostgresLastResourceFrozenAfterSendingItsCommitIsCommittedEverywhere) {
  StartServer(Config("last_resource_commit = true\n", true, "xatmd.conf"));
  Frozen f;
  FreezeAt(dir_ / "xatmd.conf", "pgsql.onephase.after_send", Work::kTwoPostgres, 7, &f);
  LetTheServerTakeOver(0);
  EXPECT_TRUE(WaitFor([&] { return Prepared(db_.conninfo()) == 0; }, 10)) << server_->Log();
  EXPECT_TRUE(PgHas(db_.conninfo(), 7));
  EXPECT_TRUE(PgHas(db2_.conninfo(), 7));
  EXPECT_EQ(XATM_OK, f.Resume()) << server_->Log();
}

// The embedded TM holds its log's lock while frozen: no admin tool can
// resolve its transactions, at any of its commit points; woken, it finishes.
TEST_F(PauseTest, EmbeddedTmFrozenAtEachCommitPointCannotBeResolvedByAnother) {
  struct Case {
    const char* tm_lines;
    const char* point;
  } cases[] = {{"", "tm.lrc.before_last"},
               {"", "tm.lrc.after_last"},
               {kEveryBranchPrepared, "tm.prepare.after_all"},
               {kEveryBranchPrepared, "log.batch.after_sync:2"},  // the COMMIT's batch (the 1st: xatm_open's)
               {kEveryBranchPrepared, "tm.commit.after_decision"},
               {kEveryBranchPrepared, "tm.commit.before_branch"}};
  long id = 100;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.point);
    const std::string config = Config(c.tm_lines, false, "embedded.conf");
    Frozen f;
    FreezeAt(config, c.point, Work::kTransfer, ++id, &f);
    for (const std::string& cmd : {std::string("recover"), "rollback " + f.gtrid + " --force --reason test",
                                   "commit " + f.gtrid + " --force --reason test"}) {
      const ShellResult r = RunShell(std::string(XATM_CLI) + " -c " + config + " " + cmd);
      EXPECT_EQ(5, r.code) << cmd << ": " << r.out;  // the log is the frozen process's
    }
    EXPECT_EQ(XATM_OK, f.Resume());
    EXPECT_EQ(1u, bank_->PgTransfers().count(id));
    EXPECT_EQ(1u, bank_->SqliteTransfers().count(id));
    EXPECT_EQ(0, bank_->PgPrepared());
    EXPECT_EQ(0, bank_->SqlitePrepared());
  }
  EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
}

// ---------------------------------------------------------------------------
// A pause soak: a worker process whose threads transfer through xatmd is
// frozen (SIGSTOP) longer than client_timeout_s at random moments, again and
// again, while the server takes its sessions over; its TM renews them and
// goes on. Afterwards every transfer is atomic and every XATM_OK true.

// What each transfer's xatm_commit (or xatm_prepare) returned, by id.
using Outcomes = std::map<long, int>;

enum class SoakMode { kDefault, kClassic, kSinglePreparedWriter };

// In the worker process: threads transfer until `stop` exists; then each
// outcome is written to `out` as "id rc" lines.
[[noreturn]] void SoakWorker(const std::string& config, SoakMode mode, const std::string& stop,
                             const std::string& out, int threads) {
  xatm* tm = nullptr;
  if (xatm_open(config.c_str(), &tm) != XATM_OK) {
    std::fprintf(stderr, "xatm_open: %s\n", xatm_errmsg(tm));
    ::_exit(10);
  }
  std::vector<Outcomes> results(static_cast<size_t>(threads));
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t * 7919 + ::getpid()));
      for (long n = 1; ::access(stop.c_str(), F_OK) != 0; ++n) {
        const long id = (t + 1) * 1000000L + n;
        xatm_tx* tx = nullptr;
        int rc = xatm_start(tm, &tx);
        if (rc != XATM_OK) {  // the server unreachable for a moment
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
        PGconn* pg = xatm_pgconn(tx, "bank");
        sqlite3* db = xatm_sqlite(tx, "ledger");
        bool ok = pg != nullptr && db != nullptr;
        if (ok && mode == SoakMode::kSinglePreparedWriter) {
          sqlite3_exec(db, "SELECT count(*) FROM accounts", nullptr, nullptr, nullptr);
          PGresult* r = PQexec(pg, ("INSERT INTO transfers VALUES (" + std::to_string(id) + ")").c_str());
          ok = PQresultStatus(r) == PGRES_COMMAND_OK;
          PQclear(r);
        } else if (ok) {
          ok = TransferStatements(pg, db, id, static_cast<int>(rng() % kAccounts) + 1,
                                  static_cast<int>(rng() % kAccounts) + 1, 1);
        }
        if (!ok) {
          xatm_rollback(tx);
          rc = XATM_EROLLEDBACK;
        } else {
          rc = mode == SoakMode::kSinglePreparedWriter ? xatm_prepare(tx) : XATM_OK;
          if (rc == XATM_OK) rc = xatm_commit(tx);
        }
        results[static_cast<size_t>(t)][id] = rc;
        xatm_tx_free(tx);
      }
    });
  }
  for (std::thread& th : ts) th.join();
  std::string lines;
  for (const Outcomes& o : results) {
    for (const auto& [id, rc] : o) lines += std::to_string(id) + " " + std::to_string(rc) + "\n";
  }
  WriteFileOrDie(out, lines);
  xatm_close(tm);
  ::_exit(0);
}

class PauseSoak : public PauseTest {
 protected:
  // Runs the worker for `seconds`, freezing it for 1.5 to 2.5 s (client_timeout_s
  // is 1) after every 0.2 to 0.6 s of work; returns the outcomes.
  Outcomes Soak(const std::string& config, SoakMode mode, int seconds, int* pauses) {
    const std::string stop = dir_ / "stop", out = dir_ / "outcomes";
    ::unlink(stop.c_str());
    ::unlink(out.c_str());
    pid_t pid = ForkChild();
    if (pid == 0) SoakWorker(config, mode, stop, out, 4);
    std::mt19937 rng(static_cast<unsigned>(seconds * 31 + static_cast<int>(mode)));
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    *pauses = 0;
    while (std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 400));
      ::kill(pid, SIGSTOP);
      ++*pauses;
      std::this_thread::sleep_for(std::chrono::milliseconds(1500 + rng() % 1000));
      ::kill(pid, SIGCONT);
    }
    WriteFileOrDie(stop, "");
    EXPECT_EQ(0, WaitChild(pid)) << server_->Log();
    Outcomes o;
    std::istringstream in(ReadFileOrDie(out));
    long id;
    int rc;
    while (in >> id >> rc) o[id] = rc;
    return o;
  }

  // Every transfer atomic, every XATM_OK committed everywhere, every
  // rollback nowhere, nothing left prepared once the server has resolved
  // what the frozen sessions left; then the server stops cleanly.
  void Check(const Outcomes& o, int pauses, bool both_sides) {
    ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0 && bank_->SqlitePrepared() == 0; }, 30))
        << server_->Log();
    const std::set<long> pg = bank_->PgTransfers(), sq = bank_->SqliteTransfers();
    if (both_sides) {
      EXPECT_EQ(pg, sq);
      EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
    }
    std::map<int, int> by_rc;
    for (const auto& [id, rc] : o) {
      ++by_rc[rc];
      if (rc == XATM_OK) {
        EXPECT_EQ(1u, pg.count(id)) << "transfer " << id << " returned XATM_OK but is not in PostgreSQL";
        if (both_sides) {
          EXPECT_EQ(1u, sq.count(id)) << "transfer " << id << " returned XATM_OK but is not in SQLite";
        }
      } else if (rc == XATM_EROLLEDBACK || rc == XATM_EFENCED || rc == XATM_ETIMEDOUT) {
        EXPECT_EQ(0u, pg.count(id)) << "transfer " << id << " returned " << rc << " but committed";
      }
    }
    std::string summary;
    for (const auto& [rc, n] : by_rc) summary += " " + std::to_string(rc) + ":" + std::to_string(n);
    std::printf("%d pauses, %zu transfers (by xatm_commit code:%s), %d takeovers\n", pauses, o.size(),
                summary.c_str(), server_->Count("taking over its transactions"));
    EXPECT_GE(by_rc[XATM_OK], 20) << summary;
    EXPECT_GE(server_->Count("taking over its transactions"), pauses / 2) << "the pauses did not outlast client_timeout_s";
  }
  int Seconds() const {
    const char* s = std::getenv("XATM_PAUSE_SOAK_S");
    return s ? std::atoi(s) : 20;
  }
};

TEST_F(PauseSoak, DefaultSettingsClientFrozenAtRandomLosesNothing) {
  StartServer(Config("", true, "xatmd.conf"));
  int pauses = 0;
  const Outcomes o = Soak(dir_ / "xatmd.conf", SoakMode::kDefault, Seconds(), &pauses);
  Check(o, pauses, true);
  EXPECT_EQ(0, server_->Stop(SIGTERM)) << server_->Log();
}

TEST_F(PauseSoak, ClassicClientFrozenAtRandomLosesNothing) {
  StartServer(Config(kEveryBranchPrepared, true, "xatmd.conf"));
  int pauses = 0;
  const Outcomes o = Soak(dir_ / "xatmd.conf", SoakMode::kClassic, Seconds(), &pauses);
  Check(o, pauses, true);
  EXPECT_EQ(0, server_->Stop(SIGTERM)) << server_->Log();
}

TEST_F(PauseSoak, SinglePreparedWriterFrozenAtRandomIsNeverReportedCommittedWrongly) {
  StartServer(Config(kEveryBranchPrepared, true, "xatmd.conf"));
  int pauses = 0;
  const Outcomes o = Soak(dir_ / "xatmd.conf", SoakMode::kSinglePreparedWriter, Seconds(), &pauses);
  Check(o, pauses, false);
  EXPECT_EQ(0, server_->Stop(SIGTERM)) << server_->Log();
}

#else

TEST(PauseTest, NeedsTheFaultInjectionBuild) {
  GTEST_SKIP() << "configure with -DXATM_FAULT_INJECTION=ON (scripts/test.sh does)";
}

#endif

}  // namespace
}  // namespace xtm::test
