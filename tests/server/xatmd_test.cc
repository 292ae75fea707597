// xatmd as a real server process, with real client processes doing transfers
// across PostgreSQL and SQLite through it: takeover of killed clients,
// a killed server, fencing, authentication, malformed frames, admin and
// metrics through the server.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>

#include "core/gtrid.h"
#include "server/protocol.h"
#include "support/fork_child.h"
#include "support/temp_dir.h"
#include "support/xatmd_process.h"
#include "tm/bank.h"
#include "util/coding.h"
#include "xatm/rm_sqlite.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

using Clock = std::chrono::steady_clock;
using Xatmd = XatmdProcess;
using Result = ShellResult;

std::string HttpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
    const std::string req = "GET " + path + " HTTP/1.0\r\n\r\n";
    (void)!::write(fd, req.data(), req.size());
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// The value of an unlabelled metric, or -1.
double Metric(const std::string& text, const std::string& name) {
  const std::string key = "\n" + name + " ";
  const size_t at = text.find(key);
  return at == std::string::npos ? -1 : std::strtod(text.c_str() + at + key.size(), nullptr);
}

Result Shell(const std::string& cmd) { return RunShell(cmd); }

// Exit codes of the client children.
constexpr int kChildOk = 0;
constexpr int kChildOpenFailed = 10;
constexpr int kChildBadOutcome = 11;

// In a child process: a TM opened from config and a transaction begun on it;
// the child exits with a code of the above if either fails.
xatm_tx* ChildBegins(const std::string& config, xatm** tm) {
  if (xatm_open(config.c_str(), tm) != XATM_OK) ::_exit(kChildOpenFailed);
  xatm_tx* tx = nullptr;
  if (xatm_start(*tm, &tx) != XATM_OK) ::_exit(kChildBadOutcome);
  return tx;
}

// A client killed at a crash point, and whether its transfer must commit.
struct KilledAt {
  const char* crash_at;
  long id;
  bool commits;
};

class XatmdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bank_ = std::make_unique<Bank>(db_.conninfo(), dir_.path());
    socket_ = dir_ / "xatmd.sock";
    config_ = WriteConfig("");
    server_ = std::make_unique<Xatmd>(config_, dir_ / "xatmd.log");
  }
  // The bank's configuration, served by xatmd on a unix socket; extra lines
  // go into [server]. Most tests here follow the classic protocol (every
  // branch prepared, the decision in the server's log); defaults: the
  // default settings instead (the SQLite branch commits last).
  std::string WriteConfig(const std::string& extra, const std::string& name = "xatm-server.conf",
                          int client_timeout_s = 2, bool defaults = false) {
    std::string text = ReadFileOrDie(bank_->WriteConfigFile(60, defaults ? "" : kEveryBranchPrepared));
    text.replace(text.find("[tm]\n") + 5, 0, "server = unix:" + socket_ + "\n");
    // The server says where it listens at level info.
    text.replace(text.find("log_level = warn"), 16, "log_level = info");
    text += "\n[server]\nclient_timeout_s = " + std::to_string(client_timeout_s) +
            "\nrecovery_interval_s = 1\nmetrics = 127.0.0.1:0\n" + extra;
    const std::string path = dir_ / name;
    WriteFileOrDie(path, text);
    return path;
  }
  void ExpectConsistent() {
    EXPECT_EQ(2L * kAccounts * kOpening, bank_->PgSum() + bank_->SqliteSum());
    EXPECT_EQ(bank_->PgTransfers(), bank_->SqliteTransfers());
  }
  // A child process: n transfers through xatm_open(config), ids from first.
  pid_t Transfers(const std::string& config, long first, int n) {
    pid_t pid = ForkChild();
    if (pid != 0) return pid;
    xatm* tm = nullptr;
    if (xatm_open(config.c_str(), &tm) != XATM_OK) {
      std::fprintf(stderr, "xatm_open: %s\n", xatm_errmsg(tm));
      ::_exit(kChildOpenFailed);
    }
    std::mt19937 rng(static_cast<unsigned>(first));
    for (int i = 0; i < n; ++i) {
      xatm_tx* tx = nullptr;
      if (xatm_start(tm, &tx) != XATM_OK) ::_exit(kChildBadOutcome);
      const bool ok = TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), first + i,
                                         static_cast<int>(rng() % kAccounts) + 1,
                                         static_cast<int>(rng() % kAccounts) + 1, 1);
      const int rc = ok ? xatm_commit(tx) : xatm_rollback(tx);
      if (rc != XATM_OK && rc != XATM_EROLLEDBACK) {
        std::fprintf(stderr, "transfer %ld: %d %s\n", first + i, rc, xatm_errmsg(tm));
        ::_exit(kChildBadOutcome);
      }
      xatm_tx_free(tx);
    }
    ::_exit(xatm_close(tm) == XATM_OK ? kChildOk : kChildBadOutcome);
  }
  // A transfer through config_ in a child that dies at crash point `at`;
  // returns its gtrid (hex) once the child is dead.
  std::string TransferDyingAt(const std::string& at, long id) {
    int fds[2];
    EXPECT_EQ(0, ::pipe(fds));
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::setenv("XATM_CRASH_AT", at.c_str(), 1);
      xatm* tm = nullptr;
      xatm_tx* tx = ChildBegins(config_, &tm);
      XID x;
      xatm_tx_xid(tx, &x);
      if (::write(fds[1], x.data, 20) != 20) ::_exit(kChildBadOutcome);
      TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), id, 1, 2, 10);
      xatm_commit(tx);
      ::_exit(kChildBadOutcome);
    }
    ::close(fds[1]);
    char g[20];
    const bool got = ::read(fds[0], g, 20) == 20;
    ::close(fds[0]);
    EXPECT_EQ(128 + SIGKILL, WaitChild(pid)) << "the child did not die at " << at;
    EXPECT_TRUE(got);
    return got ? tm::ToHex(std::string(g, 20)) : "";
  }
  // procs client processes with each transfers, all through the server;
  // every process ends well, the banks agree, and at least half of the
  // transfers committed (the rest rolled back). Returns how many committed.
  size_t TransfersByProcesses(int procs, int each) {
    std::vector<pid_t> kids;
    for (int p = 0; p < procs; ++p) kids.push_back(Transfers(config_, 1000L * (p + 1), each));
    for (pid_t k : kids) EXPECT_EQ(kChildOk, WaitChild(k)) << server_->Log();
    ExpectConsistent();
    const size_t committed = bank_->PgTransfers().size();
    EXPECT_GE(committed, static_cast<size_t>(procs * each / 2));
    return committed;
  }
  ScratchDb db_;
  TempDir dir_;
  std::unique_ptr<Bank> bank_;
  std::string socket_, config_;
  std::unique_ptr<Xatmd> server_;
};

TEST_F(XatmdTest, ManyClientProcessesTransferThroughOneServer) {
  server_->Start();
  constexpr int kProcs = 4, kEach = 40;
  const size_t committed = TransfersByProcesses(kProcs, kEach);
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ(0, bank_->SqlitePrepared());
  // Every transaction wrote to both databases: one decision each, in the
  // server's log, and the clients' counts arrived with their BYE.
  // The in-doubt gauges come from the server's recovery passes (every second here).
  const double passes = Metric(HttpGet(server_->MetricsPort(), "/metrics"), "xatm_recovery_passes_total");
  ASSERT_TRUE(WaitFor([&] { return Metric(HttpGet(server_->MetricsPort(), "/metrics"), "xatm_recovery_passes_total") > passes; }, 10));
  const std::string m = HttpGet(server_->MetricsPort(), "/metrics");
  EXPECT_EQ(static_cast<double>(committed), Metric(m, "xatm_decisions_total")) << m;
  EXPECT_EQ(static_cast<double>(kProcs * kEach), Metric(m, "xatm_transactions_begun_total")) << m;
  EXPECT_EQ(static_cast<double>(committed), Metric(m, "xatm_transactions_committed_total")) << m;
  EXPECT_EQ(0, Metric(m, "xatm_clients_connected"));
  EXPECT_NE(std::string::npos, m.find("xatm_decision_latency_seconds_bucket{le=\"+Inf\"} " + std::to_string(committed)));
  EXPECT_NE(std::string::npos, m.find("xatm_indoubt_branches{rm=\"bank\"} 0"));
  const Result dump = Shell(std::string(XATM_CLI) + " --server unix:" + socket_ + " log dump");
  EXPECT_EQ(0, dump.code) << dump.out;
  EXPECT_EQ(0, server_->Stop(SIGTERM)) << server_->Log();
  EXPECT_NE(std::string::npos, server_->Log().find("stopped"));
}

TEST_F(XatmdTest, KilledClientIsResolvedByTheServerWithoutAnyoneCallingRecovery) {
  server_->Start();
  // Two children die holding prepared branches: one before the decision
  // (rolled back), one after it (committed).
  const KilledAt cases[] = {{"tm.prepare.after_all", 1, false}, {"tm.commit.after_decision", 2, true}};
  for (const KilledAt& c : cases) {
    TransferDyingAt(c.crash_at, c.id);
    const auto t0 = Clock::now();
    ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0 && bank_->SqlitePrepared() == 0; }, 10))
        << c.crash_at << "\n" << server_->Log();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("%s: resolved by the server %.1f s after the client died\n", c.crash_at, s);
    EXPECT_EQ(c.commits, bank_->PgTransfers().count(c.id) == 1) << c.crash_at;
    ExpectConsistent();
  }
  EXPECT_NE(std::string::npos, server_->Log().find("declared dead"));
  const std::string m = HttpGet(server_->MetricsPort(), "/metrics");
  EXPECT_EQ(2, Metric(m, "xatm_takeovers_total")) << m;
}

// The default settings through xatmd: the SQLite branch commits last with
// the decision inside its own transaction, so the server's log gets no commit
// record; a client killed before or after that commit is resolved by the
// server from the SQLite file's decision rows.
TEST_F(XatmdTest, DefaultSettingsClientsCommitLastOnSqliteAndTheServerResolvesTheKilled) {
  config_ = WriteConfig("", "xatm-default.conf", 2, /*defaults=*/true);
  server_ = std::make_unique<Xatmd>(config_, dir_ / "xatmd-default.log");
  server_->Start();
  TransfersByProcesses(3, 30);
  const KilledAt cases[] = {{"tm.lrc.before_last", 1, false}, {"tm.lrc.after_last", 2, true}};
  for (const KilledAt& c : cases) {
    TransferDyingAt(c.crash_at, c.id);
    EXPECT_EQ(1, bank_->PgPrepared()) << c.crash_at;  // the PostgreSQL branch, and nothing in the sidecar
    EXPECT_EQ(0, bank_->SqlitePrepared()) << c.crash_at;
    EXPECT_EQ(c.commits, bank_->SqliteTransfers().count(c.id) == 1) << c.crash_at;
    ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0; }, 10)) << c.crash_at << "\n" << server_->Log();
    EXPECT_EQ(c.commits, bank_->PgTransfers().count(c.id) == 1) << c.crash_at;
    ExpectConsistent();
  }
  const Result dump = Shell(std::string(XATM_CLI) + " --server unix:" + socket_ + " log dump");
  EXPECT_EQ(0, dump.code) << dump.out;
  EXPECT_EQ(std::string::npos, dump.out.find("COMMIT")) << dump.out;
  EXPECT_EQ(0, server_->Stop(SIGTERM)) << server_->Log();
}

// Last-resource commit across two PostgreSQL databases through xatmd: the
// decision is a row in the second database, not in the server's log. A
// client killed before, after or during that COMMIT is resolved by the server
// alone, once it has ended the client's sessions.
TEST_F(XatmdTest, KilledLastResourceClientIsResolvedFromTheDecisionRow) {
  ScratchDb db2;
  for (const std::string& ci : {db_.conninfo(), db2.conninfo()}) {
    PGconn* c = ConnectOrDie(ci);
    Exec(c, "CREATE TABLE lrc_t (id bigint PRIMARY KEY)");
    PQfinish(c);
  }
  std::string text = ReplaceEveryBranchPrepared(ReadFileOrDie(config_), "last_resource_commit = true\n");
  text += "\n[rm.bank2]\ntype = postgresql\nconninfo = " + db2.conninfo() + "\n";
  const std::string config = dir_ / "xatm-lrc.conf";
  WriteFileOrDie(config, text);
  server_ = std::make_unique<Xatmd>(config, dir_ / "xatmd-lrc.log");
  server_->Start();
  auto count = [](const std::string& ci, const std::string& sql) {
    PGconn* c = ConnectOrDie(ci);
    const std::string v = Exec(c, sql);
    PQfinish(c);
    return v;
  };
  auto has = [&](const std::string& ci, long id) {
    return count(ci, "SELECT count(*) FROM lrc_t WHERE id = " + std::to_string(id)) == "1";
  };
  struct Case {
    const char* crash_at;
    long id;
  } cases[] = {{"tm.lrc.before_last", 1}, {"tm.lrc.after_last", 2}, {"pgsql.onephase.after_send", 3}};
  for (const Case& c : cases) {
    pid_t pid = ForkChild();
    if (pid == 0) {
      ::setenv("XATM_CRASH_AT", c.crash_at, 1);
      xatm* tm = nullptr;
      xatm_tx* tx = ChildBegins(config, &tm);
      PGconn* a = xatm_pgconn(tx, "bank");
      PGconn* b = xatm_pgconn(tx, "bank2");
      const std::string ins = "INSERT INTO lrc_t VALUES (" + std::to_string(c.id) + ")";
      PQclear(PQexec(a, ins.c_str()));
      PQclear(PQexec(b, ins.c_str()));
      xatm_commit(tx);
      ::_exit(kChildBadOutcome);
    }
    ASSERT_EQ(128 + SIGKILL, WaitChild(pid)) << "the child did not die at " << c.crash_at;
    if (std::string(c.crash_at) != "pgsql.onephase.after_send") {
      EXPECT_EQ(1, bank_->PgPrepared()) << c.crash_at;  // the first database's branch
    }
    ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0; }, 10)) << c.crash_at << "\n" << server_->Log();
    const bool committed = std::string(c.crash_at) != "tm.lrc.before_last";
    if (std::string(c.crash_at) == "pgsql.onephase.after_send") {
      EXPECT_EQ(has(db2.conninfo(), c.id), has(db_.conninfo(), c.id)) << c.crash_at;
    } else {
      EXPECT_EQ(committed, has(db_.conninfo(), c.id)) << c.crash_at;
      EXPECT_EQ(committed, has(db2.conninfo(), c.id)) << c.crash_at;
    }
  }
  // Nothing of ours prepared (other tests share the cluster).
  for (const std::string& ci : {db_.conninfo(), db2.conninfo()}) {
    EXPECT_EQ("0", count(ci, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"));
  }
  // No COMMIT record: the decisions were rows.
  const Result dump = Shell(std::string(XATM_CLI) + " --server unix:" + socket_ + " log dump");
  EXPECT_EQ(0, dump.code) << dump.out;
  EXPECT_NE(std::string::npos, dump.out.find("NODE")) << dump.out;  // the sessions' incarnations
  EXPECT_EQ(std::string::npos, dump.out.find("COMMIT")) << dump.out;
}

TEST_F(XatmdTest, KilledServerGivesAClearErrorAndRestartFinishesTheDecision) {
  // The server dies right after the decision is durable, before it answers.
  server_->Start("server.commit.after_decision");
  pid_t pid = ForkChild();
  if (pid == 0) {
    xatm* tm = nullptr;
    xatm_tx* tx = ChildBegins(config_, &tm);
    TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), 7, 1, 2, 10);
    const int rc = xatm_commit(tx);
    const std::string msg = xatm_errmsg(tm);
    std::fprintf(stderr, "commit: %d %s\n", rc, msg.c_str());
    // The application learns that the outcome is not known now, and why.
    if (rc != XATM_EUNKNOWN || msg.find("xatmd") == std::string::npos) ::_exit(kChildBadOutcome);
    // A new transaction on the lost session is refused with a clear error.
    xatm_tx* tx2 = nullptr;
    if (xatm_start(tm, &tx2) == XATM_OK) ::_exit(kChildBadOutcome);
    xatm_tx_free(tx);
    xatm_close(tm);
    ::_exit(kChildOk);
  }
  const int st = server_->Wait();
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  EXPECT_EQ(kChildOk, WaitChild(pid));
  // Still prepared: nobody may decide but the log.
  EXPECT_EQ(1, bank_->PgPrepared());
  server_->Start();
  ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0 && bank_->SqlitePrepared() == 0; }, 10)) << server_->Log();
  EXPECT_EQ(1u, bank_->PgTransfers().count(7));
  EXPECT_EQ(1u, bank_->SqliteTransfers().count(7));
  ExpectConsistent();
}

TEST_F(XatmdTest, LateCommitFromAFencedClientIsRefusedAndNothingIsHalfCommitted) {
  server_->Start();
  int ready[2], go[2];
  ASSERT_EQ(0, ::pipe(ready));
  ASSERT_EQ(0, ::pipe(go));
  pid_t pid = ForkChild();
  if (pid == 0) {
    xatm* tm = nullptr;
    xatm_tx* tx = ChildBegins(config_, &tm);
    TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), 9, 1, 2, 10);
    if (xatm_prepare(tx) != XATM_OK) ::_exit(kChildBadOutcome);
    char c = 'p';
    if (::write(ready[1], &c, 1) != 1 || ::read(go[0], &c, 1) != 1) ::_exit(kChildBadOutcome);
    const int rc = xatm_commit(tx);
    std::fprintf(stderr, "late commit: %d %s\n", rc, xatm_errmsg(tm));
    xatm_tx_free(tx);
    xatm_close(tm);
    ::_exit(rc == XATM_EFENCED ? kChildOk : kChildBadOutcome);
  }
  char c;
  ASSERT_EQ(1, ::read(ready[0], &c, 1));
  EXPECT_EQ(1, bank_->PgPrepared());
  // Frozen: no heartbeats. The server declares it dead and rolls back its
  // prepared PostgreSQL branch (the SQLite one waits for the frozen
  // process's lock).
  ::kill(pid, SIGSTOP);
  ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0; }, 15)) << server_->Log();
  ::kill(pid, SIGCONT);
  ASSERT_EQ(1, ::write(go[1], "g", 1));
  EXPECT_EQ(kChildOk, WaitChild(pid)) << server_->Log();
  ASSERT_TRUE(WaitFor([&] { return bank_->SqlitePrepared() == 0; }, 15)) << server_->Log();
  EXPECT_EQ(0u, bank_->PgTransfers().count(9));
  EXPECT_EQ(0u, bank_->SqliteTransfers().count(9));
  ExpectConsistent();
  const std::string m = HttpGet(server_->MetricsPort(), "/metrics");
  EXPECT_GE(Metric(m, "xatm_fenced_requests_total"), 1) << m;
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
}

TEST_F(XatmdTest, LostReplyIsAnsweredOnceAfterTheClientResumes) {
  // The server makes the first decision durable, then drops the connection
  // instead of answering. The client reconnects, resumes its session and
  // sends the COMMIT again with its request id: it is answered from the
  // server's reply cache, not executed a second time.
  server_->Start("", "server.reply.drop:1");
  EXPECT_EQ(kChildOk, WaitChild(Transfers(config_, 800, 3))) << server_->Log();
  EXPECT_NE(std::string::npos, server_->Log().find("fault point: dropping the connection")) << server_->Log();
  EXPECT_NE(std::string::npos, server_->Log().find("resumed")) << server_->Log();
  const std::set<long> done = bank_->PgTransfers();
  EXPECT_EQ(3u, done.size());
  ExpectConsistent();
  // One COMMIT record per transaction in the server's log.
  const Result dump = Shell(std::string(XATM_CLI) + " --server unix:" + socket_ + " log dump --json");
  ASSERT_EQ(0, dump.code) << dump.out;
  size_t commits = 0;
  for (size_t at = dump.out.find("\"COMMIT\""); at != std::string::npos; at = dump.out.find("\"COMMIT\"", at + 1)) {
    ++commits;
  }
  EXPECT_EQ(3u, commits) << dump.out;
  const std::string m = HttpGet(server_->MetricsPort(), "/metrics");
  EXPECT_EQ(3, Metric(m, "xatm_decisions_total")) << m;
}

TEST_F(XatmdTest, TcpNeedsTheTokenAndTheSocketIsNotOpenToOthers) {
  const std::string token = dir_ / "token";
  WriteFileOrDie(token, "s3cret-s3cret-s3cret-0123456789\n");
  // A token others can read is refused before anything starts.
  ::chmod(token.c_str(), 0644);
  const std::string cfg = WriteConfig("tcp = 127.0.0.1:0\ntoken_file = " + token + "\n");
  const Result check = Shell(std::string(XATM_XATMD) + " --config " + cfg + " --check-config");
  EXPECT_EQ(2, check.code) << check.out;
  EXPECT_NE(std::string::npos, check.out.find("chmod 600")) << check.out;
  ::chmod(token.c_str(), 0600);
  server_ = std::make_unique<Xatmd>(cfg, dir_ / "xatmd.log");
  server_->Start();
  struct stat st;
  ASSERT_EQ(0, ::stat(socket_.c_str(), &st));
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(0u, st.st_mode & 0007) << std::oct << st.st_mode;
  EXPECT_EQ(0660u, st.st_mode & 0777) << std::oct << st.st_mode;

  const std::string port = std::to_string(NumberAfter(server_->Log(), "listening on tcp:127.0.0.1:"));
  ASSERT_NE("0", port);
  auto client_config = [&](const std::string& token_file, const std::string& name) {
    std::string text = ReadFileOrDie(bank_->WriteConfigFile());
    text.replace(text.find("[tm]\n") + 5, 0, "server = tcp:127.0.0.1:" + port + "\n");
    text += "\n[server]\ntoken_file = " + token_file + "\n";
    WriteFileOrDie(dir_ / name, text);
    return dir_ / name;
  };
  const std::string wrong = dir_ / "wrong-token";
  WriteFileOrDie(wrong, "not-the-token-at-all-000000\n");
  ::chmod(wrong.c_str(), 0600);
  xatm* tm = nullptr;
  EXPECT_NE(XATM_OK, xatm_open(client_config(wrong, "wrong.conf").c_str(), &tm));
  EXPECT_NE(std::string::npos, std::string(xatm_errmsg(tm)).find("wrong token")) << xatm_errmsg(tm);
  xatm_close(tm);
  EXPECT_TRUE(WaitFor([&] { return server_->Log().find("refused a tcp connection: wrong token") != std::string::npos; }, 5));
  // The right token: a transfer over TCP.
  const std::string right = client_config(token, "right.conf");
  EXPECT_EQ(kChildOk, WaitChild(Transfers(right, 500, 5))) << server_->Log();
  EXPECT_EQ(5u, bank_->PgTransfers().size());
  ExpectConsistent();
}

TEST_F(XatmdTest, RandomAndTruncatedFramesNeverCrashTheServer) {
  server_->Start();
  server::Address a;
  ASSERT_TRUE(server::ParseAddress("unix:" + socket_, &a).ok());
  std::mt19937_64 rng(42);
  auto hello = [&](uint32_t version) {
    std::string p;
    PutFixed32(&p, version);
    PutFixed32(&p, 0);
    PutBytes(&p, "");
    PutBytes(&p, "fuzz");
    PutFixed32(&p, 1);
    PutFixed32(&p, 0);
    PutFixed64(&p, 0);
    PutFixed32(&p, 0);  // no RMs
    return server::EncodeFrame(static_cast<uint8_t>(server::Kind::kHello), 1, p);
  };
  long vm_after_first_half = 0;
  for (int i = 0; i < 800; ++i) {
    if (i == 400) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a monitor tick joins the threads
      vm_after_first_half = server_->VmSizeKb();
    }
    int fd = -1;
    ASSERT_TRUE(server::Connect(a, &fd).ok()) << i << "\n" << server_->Log();
    std::string bytes;
    const int shape = i % 5;
    if (shape == 0) {  // random bytes
      bytes.resize(rng() % 200);
      for (char& ch : bytes) ch = static_cast<char>(rng());
    } else if (shape == 1) {  // a valid HELLO cut short
      bytes = hello(server::kProtocolVersion);
      bytes.resize(rng() % bytes.size());
    } else if (shape == 2) {  // a huge length
      PutFixed32(&bytes, 0xfffffff0u);
      bytes += "xxxxxxxx";
    } else if (shape == 3) {  // HELLO, then frames of random kinds and payloads
      bytes = hello(server::kProtocolVersion);
      for (int k = 0; k < 5; ++k) {
        std::string payload(rng() % 64, '\0');
        for (char& ch : payload) ch = static_cast<char>(rng());
        bytes += server::EncodeFrame(static_cast<uint8_t>(rng() % 12), rng(), payload);
      }
      bytes.resize(bytes.size() - rng() % 8);
    } else {  // a version nobody speaks
      bytes = hello(99);
    }
    (void)server::WriteAll(fd, bytes);
    ::shutdown(fd, SHUT_WR);
    char buf[256];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
    ::close(fd);
    ASSERT_TRUE(server_->Alive()) << "after frame " << i << "\n" << server_->Log();
  }
  // Every connection's thread was joined: the second 400 connections leave
  // the address space as it was (400 unjoined threads' stacks would be
  // gigabytes; malloc's per-thread arenas are capped and were reached in the
  // first half).
  EXPECT_TRUE(WaitFor([&] { return server_->VmSizeKb() - vm_after_first_half < 64 * 1024; }, 5))
      << vm_after_first_half << " KiB after 400 connections, " << server_->VmSizeKb() << " KiB after 800";
  // Still serving real clients.
  EXPECT_EQ(kChildOk, WaitChild(Transfers(config_, 700, 5))) << server_->Log();
  EXPECT_EQ(5u, bank_->PgTransfers().size());
  ExpectConsistent();
}

TEST_F(XatmdTest, AdminToolWorksThroughTheServer) {
  server_->Start();
  const std::string cli = std::string(XATM_CLI) + " --server unix:" + socket_ + " ";
  // A branch left in doubt by a client that dies after the decision, with
  // takeover far away so that it stays for the admin to see.
  TransferDyingAt("tm.commit.after_decision", 3);
  // Until the server notices (client_timeout_s), the branch is in doubt and live.
  Result list = Shell(cli + "list --json");
  EXPECT_TRUE(list.code == 0 || list.code == 1) << list.out;
  ASSERT_TRUE(WaitFor([&] { return bank_->PgPrepared() == 0 && bank_->SqlitePrepared() == 0; }, 10));
  list = Shell(cli + "list");
  EXPECT_EQ(0, list.code) << list.out;
  EXPECT_NE(std::string::npos, list.out.find("nothing in doubt")) << list.out;
  const Result health = Shell(cli + "health");
  EXPECT_EQ(0, health.code) << health.out;
  EXPECT_NE(std::string::npos, health.out.find("bank")) << health.out;
  const Result recover = Shell(cli + "recover --dry-run");
  EXPECT_EQ(0, recover.code) << recover.out;
  const Result bad = Shell(cli + "show nothex");
  EXPECT_EQ(2, bad.code) << bad.out;
  // The applications' configuration names the server: the tool says how to use it.
  const Result direct = Shell(std::string(XATM_CLI) + " -c " + config_ + " list");
  EXPECT_EQ(2, direct.code) << direct.out;
  EXPECT_NE(std::string::npos, direct.out.find("--server")) << direct.out;
  EXPECT_EQ(1u, bank_->PgTransfers().count(3));
  ExpectConsistent();
}

TEST_F(XatmdTest, HandDecisionsThroughTheServerAreRecordedAndForgotten) {
  // A long client timeout: the dead client's session may still resume, so
  // the server leaves its prepared branches alone and a person decides.
  config_ = WriteConfig("", "slow.conf", 300);
  server_ = std::make_unique<Xatmd>(config_, dir_ / "xatmd.log");
  server_->Start();
  const std::string gtrid = TransferDyingAt("tm.prepare.after_all", 5);
  ASSERT_FALSE(gtrid.empty());
  const std::string cli = std::string(XATM_CLI) + " --server unix:" + socket_ + " ";
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // a recovery pass or more
  EXPECT_EQ(1, bank_->PgPrepared());
  EXPECT_EQ(1, bank_->SqlitePrepared());
  const Result show = Shell(cli + "show " + gtrid);
  EXPECT_EQ(0, show.code) << show.out;
  EXPECT_NE(std::string::npos, show.out.find("in flight")) << show.out;
  const Result refused = Shell(cli + "commit " + gtrid);
  EXPECT_EQ(2, refused.code) << refused.out;  // --reason is required
  const Result commit = Shell(cli + "commit " + gtrid + " --operator ops-alice --reason 'ticket 42'");
  EXPECT_EQ(0, commit.code) << commit.out;
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ(0, bank_->SqlitePrepared());
  EXPECT_EQ(1u, bank_->PgTransfers().count(5));
  EXPECT_EQ(1u, bank_->SqliteTransfers().count(5));
  ExpectConsistent();
  // The hand decision is in the server's log, with who and why, until forgotten.
  Result dump = Shell(cli + "log dump");
  EXPECT_NE(std::string::npos, dump.out.find("ops-alice")) << dump.out;
  // With who the kernel says ran it, not only the name the tool gave.
  EXPECT_NE(std::string::npos, dump.out.find("ops-alice (uid " + std::to_string(::getuid()))) << dump.out;
  EXPECT_NE(std::string::npos, dump.out.find("ticket 42")) << dump.out;
  const Result forget = Shell(cli + "forget " + gtrid);
  EXPECT_EQ(0, forget.code) << forget.out;
  dump = Shell(cli + "log dump");
  EXPECT_NE(std::string::npos, dump.out.find("FORGET")) << dump.out;
  EXPECT_NE(std::string::npos, server_->Log().find("admin: xatm commit " + gtrid)) << server_->Log();
}

TEST_F(XatmdTest, CApiRecoveryCallsOfAClientGoThroughTheServer) {
  // As above: a dead client's prepared branches that the server leaves alone
  // for now; another client lists and resolves them with the C API.
  config_ = WriteConfig("", "slow.conf", 300);
  server_ = std::make_unique<Xatmd>(config_, dir_ / "xatmd.log");
  server_->Start();
  TransferDyingAt("tm.prepare.after_all", 6);
  xatm* tm = nullptr;
  ASSERT_EQ(XATM_OK, xatm_open(config_.c_str(), &tm)) << xatm_errmsg(tm);
  xatm_indoubt* list = nullptr;
  size_t n = 0;
  ASSERT_EQ(XATM_OK, xatm_indoubt_list(tm, &list, &n)) << xatm_errmsg(tm);
  ASSERT_EQ(2u, n);
  XID x = list[0].xid;
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(XATM_DECISION_NONE, list[i].decision);
    EXPECT_EQ(1, list[i].ours);  // made under the server's node id
  }
  xatm_indoubt_free(list);
  // Still live for the server (it may resume): recovery leaves it.
  EXPECT_EQ(XATM_OK, xatm_recover(tm)) << xatm_errmsg(tm);
  EXPECT_EQ(1, bank_->PgPrepared());
  ASSERT_EQ(XATM_OK, xatm_resolve(tm, &x, /*commit=*/0, "ops-bob", "customer cancelled")) << xatm_errmsg(tm);
  EXPECT_EQ(0, bank_->PgPrepared());
  EXPECT_EQ(0, bank_->SqlitePrepared());
  EXPECT_EQ(0u, bank_->PgTransfers().count(6));
  ExpectConsistent();
  // The heuristic record is in the server's log, until forgotten.
  ASSERT_EQ(XATM_OK, xatm_indoubt_list(tm, &list, &n));
  xatm_indoubt_free(list);
  EXPECT_EQ(0u, n);
  EXPECT_EQ(XATM_OK, xatm_forget(tm, &x)) << xatm_errmsg(tm);
  EXPECT_EQ(XATM_OK, xatm_close(tm));
  const Result dump = Shell(std::string(XATM_CLI) + " --server unix:" + socket_ + " log dump");
  EXPECT_NE(std::string::npos, dump.out.find("ops-bob")) << dump.out;
  EXPECT_NE(std::string::npos, dump.out.find("FORGET")) << dump.out;
}

// A restarted server does not know the sessions of the one before: a client
// learns it from its heartbeat and its next transaction runs in a new
// session, without the application reopening its TM.
TEST_F(XatmdTest, AClientGoesOnInANewSessionAfterTheServerRestarts) {
  server_->Start();
  int ready[2], go[2];
  ASSERT_EQ(0, ::pipe(ready));
  ASSERT_EQ(0, ::pipe(go));
  pid_t pid = ForkChild();
  if (pid == 0) {
    xatm* tm = nullptr;
    if (xatm_open(config_.c_str(), &tm) != XATM_OK) ::_exit(kChildOpenFailed);
    auto transfer = [&](long id) {
      xatm_tx* tx = nullptr;
      if (xatm_start(tm, &tx) != XATM_OK) return xatm_start(tm, &tx) == XATM_OK ? -1 : -2;
      const bool ok = TransferStatements(xatm_pgconn(tx, "bank"), xatm_sqlite(tx, "ledger"), id, 1, 2, 1);
      const int rc = ok ? xatm_commit(tx) : -3;
      xatm_tx_free(tx);
      return rc;
    };
    if (transfer(21) != XATM_OK) ::_exit(kChildBadOutcome);
    char c = 'r';
    if (::write(ready[1], &c, 1) != 1 || ::read(go[0], &c, 1) != 1) ::_exit(kChildBadOutcome);
    // The first xatm_start may still find the old session being given up.
    int rc = transfer(22);
    for (int i = 0; i < 50 && rc != XATM_OK; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      rc = transfer(23 + i);
    }
    std::fprintf(stderr, "after the restart: %d %s\n", rc, xatm_errmsg(tm));
    ::_exit(rc == XATM_OK && xatm_close(tm) == XATM_OK ? kChildOk : kChildBadOutcome);
  }
  char c;
  ASSERT_EQ(1, ::read(ready[0], &c, 1));
  server_->Stop(SIGKILL);
  server_->Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // the client's heartbeats find out
  ASSERT_EQ(1, ::write(go[1], "g", 1));
  EXPECT_EQ(kChildOk, WaitChild(pid)) << server_->Log();
  // Its first session, then (the restarted server's own incarnation taken) a new one.
  EXPECT_EQ(2, server_->Count(" begins: test pid " + std::to_string(pid))) << server_->Log();
  EXPECT_NE(std::string::npos, server_->Log().find("session 4 begins: test pid " + std::to_string(pid))) << server_->Log();
  ExpectConsistent();
  EXPECT_EQ(1u, bank_->PgTransfers().count(21));
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
}

// The server must be able to read every decision a client may leave in its
// RMs: a client whose RM it lacks, or whose SQLite file is another than the
// server's of the same name, is refused at HELLO with the RM named.
TEST_F(XatmdTest, AServerWithoutTheClientsRmOrWithAnotherFileRefusesTheClient) {
  std::string text = ReadFileOrDie(config_);
  const std::string lacking = dir_ / "lacking.conf";
  WriteFileOrDie(lacking, text.substr(0, text.find("[rm.ledger]")) + text.substr(text.find("[server]")));
  server_ = std::make_unique<Xatmd>(lacking, dir_ / "xatmd-lacking.log");
  server_->Start();
  xatm* tm = nullptr;
  EXPECT_NE(XATM_OK, xatm_open(config_.c_str(), &tm));
  std::string why = xatm_errmsg(tm);
  EXPECT_NE(std::string::npos, why.find("no resource manager \"ledger\" (sqlite)")) << why;
  xatm_close(tm);
  EXPECT_EQ(0, server_->Stop(SIGTERM));

  // The same name, another file (each with the id the SQLite RM gives it).
  TempDir other;
  Bank other_bank(db_.conninfo(), other.path());
  for (const std::string& path : {bank_->sqlite_path(), other_bank.sqlite_path()}) {
    const std::string info = "path=" + path;
    ASSERT_EQ(XA_OK, xatm_sqlite_switch.xa_open_entry(const_cast<char*>(info.c_str()), 77, TMNOFLAGS));
    ASSERT_EQ(XA_OK, xatm_sqlite_switch.xa_close_entry(const_cast<char*>(""), 77, TMNOFLAGS));
  }
  const std::string elsewhere = dir_ / "elsewhere.conf";
  std::string moved = text;
  moved.replace(moved.find("path = " + bank_->sqlite_path()), 7 + bank_->sqlite_path().size(),
                "path = " + other_bank.sqlite_path());
  WriteFileOrDie(elsewhere, moved);
  server_ = std::make_unique<Xatmd>(elsewhere, dir_ / "xatmd-elsewhere.log");
  server_->Start();
  EXPECT_NE(XATM_OK, xatm_open(config_.c_str(), &tm));
  why = xatm_errmsg(tm);
  EXPECT_NE(std::string::npos, why.find("another database than the client's")) << why;
  EXPECT_NE(std::string::npos, why.find(other_bank.sqlite_path())) << why;
  xatm_close(tm);
}

// A session may end (END) only its own transactions: an END from another
// would make recovery forget branches that must still commit.
TEST_F(XatmdTest, AnEndForAnotherSessionsTransactionIsIgnored) {
  config_ = WriteConfig("", "slow.conf", 300);
  server_ = std::make_unique<Xatmd>(config_, dir_ / "xatmd.log");
  server_->Start();
  const std::string gtrid_hex = TransferDyingAt("tm.commit.after_decision", 4);
  std::string gtrid;
  ASSERT_TRUE(tm::FromHex(gtrid_hex, &gtrid));
  // Another client, speaking the protocol itself.
  server::Address a;
  ASSERT_TRUE(server::ParseAddress("unix:" + socket_, &a).ok());
  int fd = -1;
  ASSERT_TRUE(server::Connect(a, &fd).ok());
  std::string hello;
  PutFixed32(&hello, server::kProtocolVersion);
  PutFixed32(&hello, 0);
  PutBytes(&hello, "");
  PutBytes(&hello, "intruder");
  PutFixed32(&hello, static_cast<uint32_t>(::getpid()));
  PutFixed32(&hello, 0);
  PutFixed64(&hello, 0);
  PutFixed32(&hello, 0);
  ASSERT_TRUE(server::WriteAll(fd, server::EncodeFrame(static_cast<uint8_t>(server::Kind::kHello), 1, hello)).ok());
  server::Frame reply;
  ASSERT_TRUE(server::ReadFrame(fd, server::kMaxFrame, &reply).ok());
  std::string end;
  PutBytes(&end, gtrid);
  ASSERT_TRUE(server::WriteAll(fd, server::EncodeFrame(static_cast<uint8_t>(server::Kind::kEnd), 2, end)).ok());
  EXPECT_TRUE(WaitFor([&] { return server_->Count("ignored an END") == 1; }, 10)) << server_->Log();
  ::close(fd);
  // Still decided, still to commit.
  const Result show = Shell(std::string(XATM_CLI) + " --server unix:" + socket_ + " show " + gtrid_hex);
  EXPECT_NE(std::string::npos, show.out.find("decision   commit")) << show.out;
  const Result dump = Shell(std::string(XATM_CLI) + " --server unix:" + socket_ + " log dump");
  EXPECT_EQ(std::string::npos, dump.out.find("END       " + gtrid_hex)) << dump.out;
  EXPECT_EQ(1, bank_->PgPrepared());
}

// Admin commands through the server run with the server's log and RM
// connections: only root, the server's own user and [server] admin_uids may.
TEST_F(XatmdTest, AdminCommandsThroughTheServerNeedAnAllowedUid) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the tool as another user";
  ::chmod(dir_.path().c_str(), 0750);  // the group (root) reaches the socket, as the tool will
  server_->Start();
  const std::string as_nobody =
      "setpriv --reuid=65534 --regid=0 --clear-groups " + std::string(XATM_CLI) + " --server unix:" + socket_ + " ";
  Result r = Shell(as_nobody + "list");
  EXPECT_EQ(6, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("uid 65534 may not run admin commands")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("admin_uids")) << r.out;
  EXPECT_EQ(0, server_->Stop(SIGTERM));
  config_ = WriteConfig("admin_uids = 65534\n", "admins.conf");
  server_ = std::make_unique<Xatmd>(config_, dir_ / "xatmd-admins.log");
  server_->Start();
  r = Shell(as_nobody + "list");
  EXPECT_EQ(0, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("nothing in doubt")) << r.out;
}

// The protocol has no TLS: TCP beyond loopback is refused before anything starts.
TEST_F(XatmdTest, TcpBeyondLoopbackIsRefused) {
  const std::string token = dir_ / "token";
  WriteFileOrDie(token, "s3cret-s3cret-s3cret-0123456789\n");
  ::chmod(token.c_str(), 0600);
  const std::string cfg = WriteConfig("tcp = 0.0.0.0:0\ntoken_file = " + token + "\n", "wide.conf");
  const Result check = Shell(std::string(XATM_XATMD) + " --config " + cfg + " --check-config");
  EXPECT_EQ(2, check.code) << check.out;
  EXPECT_NE(std::string::npos, check.out.find("only on a loopback address")) << check.out;
  EXPECT_NE(std::string::npos, check.out.find("TLS")) << check.out;
}

}  // namespace
}  // namespace xtm::test
