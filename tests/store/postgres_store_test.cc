// The PostgreSQL decision store on its own, on a real PostgreSQL: nodes and
// their incarnations and leases, records read back, group commit under 64
// committers, epoch fencing, and lost replies of its COMMIT (the loopback
// proxy).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "store/postgres_store.h"
#include "support/pg_cluster.h"
#include "support/pg_proxy.h"

namespace xtm::test {
namespace {

log::CommitRecord Commit(const std::string& gtrid) {
  log::CommitRecord c;
  c.format_id = 0x58544d31;
  c.gtrid = gtrid;
  c.time_ms = log::NowMs();
  c.branches = {{"bank", "b1"}, {"ledger", "b2"}};
  return c;
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<store::DecisionStore> Open(const std::string& node, const std::string& conninfo = "") {
    std::unique_ptr<store::DecisionStore> s;
    Status st = store::PostgresStore::Open({.conninfo = conninfo.empty() ? db_.conninfo() : conninfo,
                                            .node_name = node, .lease_s = 2},
                                           &s);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return s;
  }
  log::LogState State(store::DecisionStore* s) {
    log::LogState st;
    EXPECT_TRUE(s->State(&st).ok());
    return st;
  }
  std::string Sql(const std::string& sql) {
    PGconn* c = ConnectOrDie(db_.conninfo());
    const std::string v = Exec(c, sql);
    PQfinish(c);
    return v;
  }

  ScratchDb db_;
};

TEST_F(PostgresStoreTest, ANodeKeepsItsIdAndGetsANewIncarnationAtEachOpen) {
  std::string id;
  {
    auto s = Open("billing-1");
    ASSERT_TRUE(s);
    id = s->node_id();
    EXPECT_EQ(8u, id.size());
    EXPECT_EQ(1u, s->Current()->incarnation());
    s->Close();
  }
  auto s = Open("billing-1");
  ASSERT_TRUE(s);
  EXPECT_EQ(id, s->node_id());
  EXPECT_EQ(2u, s->Current()->incarnation());
  auto other = Open("billing-2");
  ASSERT_TRUE(other);
  EXPECT_NE(id, other->node_id());
  EXPECT_EQ(1u, other->Current()->incarnation());
}

TEST_F(PostgresStoreTest, ANodeIsHeldByOneProcessAtATime) {
  auto s = Open("billing-1");
  ASSERT_TRUE(s);
  std::unique_ptr<store::DecisionStore> second;
  Status st = store::PostgresStore::Open({.conninfo = db_.conninfo(), .node_name = "billing-1", .lease_s = 2}, &second);
  ASSERT_TRUE(st.IsBusy()) << st.ToString();
  EXPECT_NE(std::string::npos, st.message().find("is held by")) << st.message();
  EXPECT_NE(std::string::npos, st.message().find(std::to_string(::getpid()))) << st.message();
  // Closed, the lease is given up: the next open gets it at once.
  s->Close();
  s.reset();
  EXPECT_TRUE(Open("billing-1"));
}

TEST_F(PostgresStoreTest, DecisionsAreReadBackUntilEndedOrForgotten) {
  {
    auto s = Open("n");
    ASSERT_TRUE(s->Commit(Commit("g1"), s->Current().get()).ok());
    ASSERT_TRUE(s->Commit(Commit("g2"), s->Current().get()).ok());
    log::HeuristicRecord h;
    h.gtrid = "g3";
    h.rm = "bank";
    h.bqual = std::string("\0\1", 2);
    h.outcome = log::HeuristicOutcome::kRolledBack;
    h.who = "alice";
    h.why = "ticket 1";
    ASSERT_TRUE(s->Heuristic(h).ok());
    s->End(log::EndRecord{"g1"});
    const log::LogState st = State(s.get());
    EXPECT_EQ(1u, st.open_commits.size());
    ASSERT_TRUE(st.open_commits.count("g2"));
    EXPECT_EQ(2u, st.open_commits.at("g2").branches.size());
    EXPECT_EQ(1u, st.heuristics.size());
    s->Close();
  }
  auto s = Open("n");
  log::LogState st = State(s.get());
  EXPECT_EQ(1u, st.open_commits.count("g2"));
  EXPECT_EQ(0u, st.open_commits.count("g1"));
  ASSERT_EQ(1u, st.heuristics.size());
  EXPECT_EQ("alice", st.heuristics.begin()->second.who);
  ASSERT_TRUE(s->Forget(log::ForgetRecord{"g3", "", ""}).ok());
  EXPECT_TRUE(State(s.get()).heuristics.empty());
  // Another node's decisions are its own.
  auto other = Open("m");
  EXPECT_TRUE(State(other.get()).open_commits.empty());
}

TEST_F(PostgresStoreTest, SixtyFourConcurrentCommittersShareTransactionsAndLoseNothing) {
  auto s = Open("n");
  constexpr int kThreads = 64, kEach = 20;
  std::atomic<int> failed{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!s->Commit(Commit("t" + std::to_string(t) + "-" + std::to_string(i)), s->Current().get()).ok()) ++failed;
      }
    });
  }
  for (std::thread& th : ts) th.join();
  EXPECT_EQ(0, failed.load());
  EXPECT_EQ(static_cast<size_t>(kThreads * kEach), State(s.get()).open_commits.size());
  const log::LogStats stats = s->Stats();
  EXPECT_EQ(static_cast<uint64_t>(kThreads * kEach), stats.records);
  EXPECT_LT(stats.batches, stats.records);  // committers shared transactions
  std::printf("%llu decisions in %llu transactions (at most %llu in one)\n",
              static_cast<unsigned long long>(stats.records), static_cast<unsigned long long>(stats.batches),
              static_cast<unsigned long long>(stats.max_batch));
}

// Taking a node over bumps its epoch: a decision its old owner writes
// afterwards fails (Fenced, nothing written), and its session ends; a new
// incarnation can be had once the taker has let the node go.
TEST_F(PostgresStoreTest, ADecisionAfterTheEpochMovedIsFencedAndWritesNothing) {
  auto s = Open("n");
  std::shared_ptr<store::Session> before = s->Current();
  ASSERT_TRUE(s->Commit(Commit("early"), before.get()).ok());
  Sql("UPDATE xatm.node SET epoch = epoch + 1 WHERE name = 'n'");  // a takeover
  Status st = s->Commit(Commit("late"), before.get());
  ASSERT_TRUE(st.IsFenced()) << st.ToString();
  EXPECT_TRUE(before->Check().IsFenced());
  EXPECT_EQ("0", Sql("SELECT count(*) FROM xatm.record WHERE gtrid = 'late'::bytea"));
  EXPECT_EQ("1", Sql("SELECT count(*) FROM xatm.record WHERE gtrid = 'early'::bytea"));
  // A decision queued under the old session after the renewal is refused too.
  ASSERT_TRUE(s->Renew(before).ok());
  std::shared_ptr<store::Session> after = s->Current();
  EXPECT_EQ(before->incarnation() + 1, after->incarnation());
  EXPECT_TRUE(s->Commit(Commit("late-again"), before.get()).IsFenced());
  EXPECT_TRUE(s->Commit(Commit("new"), after.get()).ok());
  EXPECT_EQ("0", Sql("SELECT count(*) FROM xatm.record WHERE gtrid = 'late-again'::bytea"));
}

// The lease is renewed in the background; a taker that moved the epoch ends
// the node's session at its next renewal, before any decision is attempted.
TEST_F(PostgresStoreTest, TheLeaseRenewalNoticesATakeover) {
  auto s = Open("n");
  std::shared_ptr<store::Session> session = s->Current();
  const std::string until = Sql("SELECT lease_until FROM xatm.node WHERE name = 'n'");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_NE(until, Sql("SELECT lease_until FROM xatm.node WHERE name = 'n'"));  // renewed
  EXPECT_TRUE(session->Check().ok());
  Sql("UPDATE xatm.node SET epoch = epoch + 1 WHERE name = 'n'");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  Status st = session->Check();
  ASSERT_TRUE(st.IsFenced());
  EXPECT_NE(std::string::npos, st.message().find("taken over")) << st.message();
}

// The COMMIT of a batch reached the server but its reply was lost: settled
// on a new connection by looking for the rows, never presumed.
TEST(PostgresStoreLostReply, ALostCommitReplyIsSettledFromTheRows) {
  OwnCluster cluster(8, /*tcp=*/true);
  PgProxy proxy(cluster.port());
  const std::string via = "host=127.0.0.1 port=" + std::to_string(proxy.port()) +
                          " user=postgres dbname=postgres sslmode=disable gssencmode=disable";
  std::unique_ptr<store::DecisionStore> s;
  ASSERT_TRUE(store::PostgresStore::Open({.conninfo = via, .node_name = "n", .lease_s = 5}, &s).ok());
  proxy.CutOn("BEGIN", PgProxy::Cut::kAfterReply);
  ASSERT_TRUE(s->Commit(Commit("reply-lost"), s->Current().get()).ok());
  EXPECT_EQ(1, proxy.cuts());
  proxy.CutOn("BEGIN", PgProxy::Cut::kBeforeForward);
  Status st = s->Commit(Commit("never-sent"), s->Current().get());
  EXPECT_TRUE(st.IsIOError()) << st.ToString();  // definitely not written
  log::LogState state;
  ASSERT_TRUE(s->State(&state).ok());
  EXPECT_EQ(1u, state.open_commits.count("reply-lost"));
  EXPECT_EQ(0u, state.open_commits.count("never-sent"));
  s->Close();
}

}  // namespace
}  // namespace xtm::test
