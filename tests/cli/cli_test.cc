// The xatm admin tool, run as the real binary against in-doubt transactions
// made by real processes killed at crash points.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "core/gtrid.h"
#include "support/fork_child.h"
#include "support/json_lite.h"
#include "tm/bank.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

#ifdef XATM_FAULT_INJECTION

struct Result {
  int code = -1;
  std::string out;  // stdout and stderr
};

// The tool run in directory dir (default: the test's own).
Result Xatm(const std::string& args, const std::string& dir = "") {
  Result r;
  const std::string cd = dir.empty() ? "" : "cd " + dir + " && ";
  FILE* p = ::popen((cd + XATM_CLI + " " + args + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) r.out.append(buf, n);
  int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path());
    // In-doubt branches of the classic protocol (every branch prepared, the
    // decision in the log) are what an operator lists, shows and settles.
    config_ = bank_->WriteConfigFile(60, kEveryBranchPrepared);
  }
  std::string C() const { return "--config " + config_ + " "; }
  // A transfer in a child that dies at crash point `at`; returns its gtrid (hex).
  std::string InDoubt(const std::string& at, long id) {
    int fds[2];
    EXPECT_EQ(0, ::pipe(fds));
    // The child must not recover what earlier children left in doubt.
    const std::string no_recovery = config_ + ".child";
    {
      std::ifstream in(config_);
      std::string text((std::istreambuf_iterator<char>(in)), {});
      text.replace(text.find("[tm]\n") + 5, 0, "recover_on_open = false\n");
      std::ofstream(no_recovery, std::ios::trunc) << text;
    }
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::setenv("XATM_CRASH_AT", at.c_str(), 1);
      xatm* tm = nullptr;
      if (xatm_open(no_recovery.c_str(), &tm) != XATM_OK) ::_exit(2);
      xatm_tx* tx = nullptr;
      xatm_start(tm, &tx);
      XID x;
      xatm_tx_xid(tx, &x);
      if (::write(fds[1], x.data, 20) != 20) ::_exit(3);
      PGconn* pg = xatm_pgconn(tx, "bank");
      sqlite3* db = xatm_sqlite(tx, "ledger");
      // Accounts of its own: earlier in-doubt branches hold their row locks.
      TransferStatements(pg, db, id, static_cast<int>(id % kAccounts) + 1, 1, 10);
      xatm_commit(tx);
      ::_exit(4);
    }
    ::close(fds[1]);
    char g[20];
    EXPECT_EQ(20, ::read(fds[0], g, 20));
    ::close(fds[0]);
    int st;
    ::waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFSIGNALED(st));
    return tm::ToHex(std::string(g, 20));
  }
  JsonValue Json(const Result& r) {
    JsonValue v;
    EXPECT_TRUE(ParseJson(r.out, &v)) << r.out;
    return v;
  }

  ScratchDb db_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
  std::string config_;
};

TEST_F(CliTest, ListShowsInDoubtTransactionsAndChangesNothing) {
  const std::string undecided = InDoubt("tm.prepare.after_all", 1);
  const std::string decided = InDoubt("tm.commit.after_decision", 2);
  Result r = Xatm(C() + "list");
  EXPECT_EQ(1, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find(undecided)) << r.out;
  EXPECT_NE(std::string::npos, r.out.find(decided)) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("presumed abort")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("commit (decided)")) << r.out;
  JsonValue j = Json(Xatm(C() + "list --json"));
  ASSERT_EQ(2u, j["transactions"].size());
  for (const JsonValue& t : j["transactions"].a) {
    const bool is_decided = t["gtrid"].s == decided;
    EXPECT_EQ(is_decided ? "commit" : "none", t["decision"].s);
    EXPECT_TRUE(t["ours"].b);
    ASSERT_EQ(2u, t["branches"].size());
    std::set<std::string> rms = {t["branches"][0]["rm"].s, t["branches"][1]["rm"].s};
    EXPECT_EQ((std::set<std::string>{"bank", "ledger"}), rms);
    EXPECT_GE(t["oldest_prepared_age_s"].n, 0);
  }
  // Listing changed nothing: both are still prepared everywhere, and not a
  // byte of the SQLite files moved.
  const std::string before = ReadFileOrDie(bank_->sqlite_path()) + ReadFileOrDie(bank_->sqlite_path() + "-xatm");
  ASSERT_EQ(1, Xatm(C() + "list").code);
  EXPECT_EQ(before, ReadFileOrDie(bank_->sqlite_path()) + ReadFileOrDie(bank_->sqlite_path() + "-xatm"));
  EXPECT_EQ(2, bank_->PgPrepared());
  EXPECT_EQ(2, bank_->SqlitePrepared());
}

TEST_F(CliTest, ShowExplainsOneTransactionWithItsLogRecords) {
  const std::string g = InDoubt("tm.commit.after_decision", 3);
  Result r = Xatm(C() + "show " + g);
  EXPECT_EQ(0, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("decision   commit")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("COMMIT branches: bank, ledger")) << r.out;
  JsonValue j = Json(Xatm(C() + "show " + g + " --json"));
  EXPECT_EQ(g, j["gtrid"].s);
  EXPECT_EQ(2u, j["branches"].size());
  ASSERT_EQ(1u, j["log"].size());
  EXPECT_EQ("COMMIT", j["log"][0]["type"].s);
  Result missing = Xatm(C() + "show " + std::string(40, 'a'));
  EXPECT_EQ(2, missing.code);
  EXPECT_NE(std::string::npos, missing.out.find("no transaction")) << missing.out;
  EXPECT_EQ(2, Xatm(C() + "show not-hex").code);
}

TEST_F(CliTest, RecoverDryRunPlansAndRecoverDoes) {
  const std::string undecided = InDoubt("tm.prepare.after_all", 4);
  const std::string decided = InDoubt("tm.commit.after_decision", 5);
  Result plan = Xatm(C() + "recover --dry-run");
  EXPECT_NE(std::string::npos, plan.out.find("would roll back " + undecided)) << plan.out;
  EXPECT_NE(std::string::npos, plan.out.find("would commit " + decided)) << plan.out;
  EXPECT_EQ(2, bank_->PgPrepared());  // the plan changed nothing
  Result done = Xatm(C() + "recover");
  EXPECT_EQ(0, done.code) << done.out;
  EXPECT_NE(std::string::npos, done.out.find("2 committed, 2 rolled back")) << done.out;
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ(0, bank_->SqlitePrepared());
  EXPECT_EQ(std::set<long>{5}, bank_->PgTransfers());
  EXPECT_EQ(std::set<long>{5}, bank_->SqliteTransfers());
  Result list = Xatm(C() + "list");
  EXPECT_EQ(0, list.code) << list.out;
  EXPECT_NE(std::string::npos, list.out.find("nothing in doubt"));
}

// With the default settings the SQLite branch commits last, holding the
// decision: what a crash leaves in doubt is the PostgreSQL branch alone, and
// the decision, if any, is a row in the SQLite file, which list and show name.
TEST_F(CliTest, DefaultSettingsInDoubtBranchesAreListedWithTheirDecisionRow) {
  config_ = bank_->WriteConfigFile();
  const std::string undecided = InDoubt("tm.lrc.before_last", 11);
  const std::string decided = InDoubt("tm.lrc.after_last", 12);
  EXPECT_EQ(0, bank_->SqlitePrepared());  // nothing in the sidecar
  EXPECT_EQ(std::set<long>{12}, bank_->SqliteTransfers());
  Result r = Xatm(C() + "list");
  EXPECT_EQ(1, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find(undecided)) << r.out;
  EXPECT_NE(std::string::npos, r.out.find(decided)) << r.out;
  JsonValue j = Json(Xatm(C() + "list --json"));
  ASSERT_EQ(2u, j["transactions"].size());
  for (const JsonValue& t : j["transactions"].a) {
    const bool is_decided = t["gtrid"].s == decided;
    EXPECT_EQ(is_decided ? "commit" : "none", t["decision"].s);
    EXPECT_EQ(is_decided ? "ledger" : "", t["decision_row"].s);
    ASSERT_EQ(1u, t["branches"].size());
    EXPECT_EQ("bank", t["branches"][0]["rm"].s);
  }
  Result show = Xatm(C() + "show " + decided);
  EXPECT_EQ(0, show.code) << show.out;
  EXPECT_NE(std::string::npos, show.out.find("a last-resource decision row in ledger")) << show.out;
  EXPECT_NE(std::string::npos, show.out.find("commit (decided)")) << show.out;
  EXPECT_EQ(2, bank_->PgPrepared());  // looking changed nothing
  Result done = Xatm(C() + "recover");
  EXPECT_EQ(0, done.code) << done.out;
  EXPECT_NE(std::string::npos, done.out.find("1 committed, 1 rolled back")) << done.out;
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ(std::set<long>{12}, bank_->PgTransfers());
  EXPECT_EQ(std::set<long>{12}, bank_->SqliteTransfers());
  EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
  EXPECT_EQ(0, Xatm(C() + "list").code);
}

// A decision row is a decision as binding as a COMMIT record: rolling back a
// transaction it decided is refused without --force, and the plan names it.
TEST_F(CliTest, RollbackOfATransactionDecidedByADecisionRowIsRefusedWithoutForce) {
  config_ = bank_->WriteConfigFile();
  const std::string decided = InDoubt("tm.lrc.after_last", 13);
  Result refused = Xatm(C() + "rollback " + decided + " --reason test");
  EXPECT_EQ(6, refused.code) << refused.out;
  EXPECT_NE(std::string::npos, refused.out.find("decision row is in ledger")) << refused.out;
  EXPECT_NE(std::string::npos, refused.out.find("--force")) << refused.out;
  EXPECT_EQ(1, bank_->PgPrepared());
  EXPECT_EQ(0u, bank_->PgTransfers().count(13));
  // Forced, it is done, and recorded as a heuristic decision.
  Result forced = Xatm(C() + "rollback " + decided + " --reason 'told to' --force");
  EXPECT_EQ(0, forced.code) << forced.out;
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_NE(std::string::npos, Xatm(C() + "log dump").out.find("rolled back by")) << Xatm(C() + "log dump").out;
}

// Relative paths in a configuration file are relative to the file: the tool
// run from another directory finds the same SQLite file (and its decision
// rows) and log, and creates nothing where it runs.
TEST_F(CliTest, RelativePathsInTheConfigurationAreRelativeToTheFile) {
  std::string text = ReadFileOrDie(bank_->WriteConfigFile());
  auto relative = [&](const std::string& key, const std::string& abs, const std::string& rel) {
    const size_t at = text.find(key + " = " + abs);
    ASSERT_NE(std::string::npos, at) << text;
    text.replace(at, key.size() + 3 + abs.size(), key + " = " + rel);
  };
  relative("path", bank_->sqlite_path(), "ledger.db");
  relative("log_dir", bank_->log_dir(), "log");
  config_ = dir_ / "relative.conf";
  WriteFileOrDie(config_, text);
  InDoubt("tm.lrc.after_last", 14);
  InDoubt("tm.lrc.before_last", 15);
  TempDir elsewhere;
  Result r = Xatm(C() + "recover", elsewhere.path());
  EXPECT_EQ(0, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("1 committed, 1 rolled back")) << r.out;
  EXPECT_EQ(std::set<long>{14}, bank_->PgTransfers());
  EXPECT_EQ(std::set<long>{14}, bank_->SqliteTransfers());
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ(0u, DirBytes(elsewhere.path()));
  EXPECT_FALSE(std::ifstream(elsewhere / "ledger.db").good());
}

TEST_F(CliTest, CommitAndRollbackByHandAreRecordedAndGuarded) {
  const std::string g = InDoubt("tm.prepare.after_all", 6);
  Result no_reason = Xatm(C() + "commit " + g);
  EXPECT_EQ(2, no_reason.code);
  EXPECT_NE(std::string::npos, no_reason.out.find("--reason")) << no_reason.out;
  Result r = Xatm(C() + "commit " + g + " --operator alice --reason 'payment confirmed by phone'");
  EXPECT_EQ(0, r.code) << r.out;
  EXPECT_EQ(std::set<long>{6}, bank_->PgTransfers());
  EXPECT_EQ(std::set<long>{6}, bank_->SqliteTransfers());
  // The audit trail.
  Result dump = Xatm(C() + "log dump");
  EXPECT_NE(std::string::npos, dump.out.find("HEURISTIC")) << dump.out;
  EXPECT_NE(std::string::npos, dump.out.find("committed by alice: payment confirmed by phone")) << dump.out;
  // The heuristic outcome stays listed until forgotten.
  JsonValue j = Json(Xatm(C() + "list --json"));
  ASSERT_EQ(1u, j["transactions"].size());
  EXPECT_EQ("heuristic", j["transactions"][0]["decision"].s);
  EXPECT_EQ(0, Xatm(C() + "forget " + g).code);
  EXPECT_EQ(0, Xatm(C() + "list").code);
  EXPECT_EQ(2, Xatm(C() + "forget " + g).code);

  // Rolling back what the log says is committed is refused, unless forced.
  const std::string d = InDoubt("tm.commit.after_decision", 7);
  Result refused = Xatm(C() + "rollback " + d + " --reason test");
  EXPECT_EQ(6, refused.code) << refused.out;
  EXPECT_NE(std::string::npos, refused.out.find("--force")) << refused.out;
  EXPECT_EQ(1, bank_->PgPrepared());
  EXPECT_EQ(0, Xatm(C() + "rollback " + d + " --reason 'told to' --force").code);
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ(2, Xatm(C() + "commit " + std::string(40, 'b') + " --reason x").code);
}

TEST_F(CliTest, BadInputAndARunningOwnerAreClearErrors) {
  EXPECT_EQ(2, Xatm("list").code);
  EXPECT_EQ(2, Xatm("--config /nonexistent.conf list").code);
  EXPECT_EQ(2, Xatm(C() + "frobnicate").code);
  EXPECT_EQ(2, Xatm(C() + "show zz").code);
  Result help = Xatm("--help");
  EXPECT_EQ(0, help.code);
  EXPECT_NE(std::string::npos, help.out.find("examples:"));
  EXPECT_NE(std::string::npos, Xatm("--version").out.find("xatm 0."));
  // A running process owns the log.
  xatm* tm = nullptr;
  ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm));
  Result busy = Xatm(C() + "list");
  EXPECT_EQ(5, busy.code) << busy.out;
  EXPECT_NE(std::string::npos, busy.out.find("process " + std::to_string(::getpid()))) << busy.out;
  EXPECT_NE(std::string::npos, busy.out.find("--force")) << busy.out;
  EXPECT_EQ(0, Xatm(C() + "list --force").code);
  EXPECT_EQ(5, Xatm(C() + "recover").code);
  xatm_close(tm);
}

TEST_F(CliTest, AnUnreachableRmIsNamedAndTheRestStillListed) {
  const std::string g = InDoubt("tm.prepare.after_all", 8);
  {
    std::ofstream f(config_, std::ios::app);
    f << "\n[rm.archive]\ntype = postgresql\nconninfo = host=/nonexistent-dir connect_timeout=2\n";
  }
  Result r = Xatm(C() + "list");
  EXPECT_EQ(4, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("archive")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find(g)) << r.out;
  Result h = Xatm(C() + "health");
  EXPECT_EQ(4, h.code) << h.out;
  EXPECT_NE(std::string::npos, h.out.find("UNREACHABLE")) << h.out;
}

TEST_F(CliTest, LogVerifyFindsCorruptionWithTheOffset) {
  InDoubt("tm.commit.after_decision", 9);
  InDoubt("tm.commit.after_decision", 11);
  Result ok = Xatm("--log-dir " + bank_->log_dir() + " log verify");
  EXPECT_EQ(0, ok.code) << ok.out;
  EXPECT_NE(std::string::npos, ok.out.find("every checksum good")) << ok.out;
  JsonValue j = Json(Xatm(C() + "log dump --json"));
  ASSERT_GE(j["records"].size(), 2u);
  const int64_t victim = static_cast<int64_t>(j["records"][1]["offset"].n);
  const std::string seg = bank_->log_dir() + "/" + j["records"][1]["segment"].s;
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(victim + 12);
    char c;
    f.get(c);
    f.seekp(victim + 12);
    f.put(static_cast<char>(c ^ 0x40));
  }
  Result bad = Xatm("--log-dir " + bank_->log_dir() + " log verify");
  EXPECT_EQ(3, bad.code) << bad.out;
  EXPECT_NE(std::string::npos, bad.out.find("offset " + std::to_string(victim))) << bad.out;
  EXPECT_EQ(3, Xatm(C() + "list").code);
}

TEST_F(CliTest, HealthShowsSlotsXminAndAges) {
  InDoubt("tm.prepare.after_all", 10);
  Result r = Xatm(C() + "health --json --warn-age-s 0");
  EXPECT_EQ(1, r.code) << r.out;
  JsonValue j = Json(r);
  ASSERT_EQ(2u, j["resource_managers"].size());
  const JsonValue& pg = j["resource_managers"][0];
  EXPECT_EQ("bank", pg["name"].s);
  EXPECT_EQ(1, pg["in_doubt"].n);
  EXPECT_GT(pg["max_prepared_transactions"].n, 0);
  EXPECT_GE(pg["xmin_held_back_by"].n, 0);
  EXPECT_GE(pg["warnings"].size(), 1u);
  EXPECT_EQ(1, j["resource_managers"][1]["in_doubt"].n);
  Result table = Xatm(C() + "health");
  EXPECT_NE(std::string::npos, table.out.find("SLOTS LEFT")) << table.out;
  EXPECT_EQ(0, Xatm(C() + "recover").code);
  EXPECT_EQ(0, Xatm(C() + "health").code);
}

#else

TEST(CliTest, NeedsTheFaultInjectionBuild) {
  GTEST_SKIP() << "configure with -DXATM_FAULT_INJECTION=ON (scripts/test.sh does)";
}

#endif

}  // namespace
}  // namespace xtm::test
