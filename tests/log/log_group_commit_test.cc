#include <atomic>
#include <thread>
#include <vector>

#include "log/log_test_util.h"
#include "support/temp_dir.h"

namespace xtm::test {
namespace {

TEST(DecisionLogGroupCommit, SixtyFourConcurrentCommittersLoseNothing) {
  TempDir d;
  constexpr int kThreads = 64, kEach = 200;
  log::LogStats stats;
  {
    auto l = OpenLogOrDie(d.path());
    ASSERT_TRUE(l);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          std::string g = "t" + std::to_string(t) + "-" + std::to_string(i);
          if (!l->Append(MakeCommit(g)).ok()) failures++;
          // Every other transaction ends at once, unforced.
          if (i % 2 == 0 && !l->Append(log::EndRecord{g}).ok()) failures++;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(0, failures.load());
    stats = l->Stats();
    // The committers shared syncs: fewer fdatasyncs than durable records.
    EXPECT_LT(stats.syncs, uint64_t{kThreads * kEach});
    EXPECT_GT(stats.max_batch, 1u);
  }
  auto l = OpenLogOrDie(d.path());
  log::LogState st = l->State();
  EXPECT_EQ(size_t{kThreads * kEach / 2}, st.open_commits.size());
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 1; i < kEach; i += 2) {
      EXPECT_TRUE(st.open_commits.count("t" + std::to_string(t) + "-" + std::to_string(i)));
    }
  }
}

TEST(DecisionLogGroupCommit, ConcurrentCommittersAcrossSegmentRollsLoseNothing) {
  TempDir d;
  constexpr int kThreads = 16, kEach = 300;
  {
    auto l = OpenLogOrDie(d.path(), {.segment_bytes = 8 << 10});
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          std::string g = "r" + std::to_string(t) + "-" + std::to_string(i);
          if (!l->Append(MakeCommit(g)).ok()) failures++;
          if (i % 3 != 0 && !l->Append(log::EndRecord{g}).ok()) failures++;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(0, failures.load());
    EXPECT_GT(l->Stats().segments_deleted, 0u);
  }
  auto l = OpenLogOrDie(d.path());
  log::LogState st = l->State();
  EXPECT_EQ(size_t{kThreads * kEach / 3}, st.open_commits.size());
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kEach; i += 3) {
      EXPECT_TRUE(st.open_commits.count("r" + std::to_string(t) + "-" + std::to_string(i)));
    }
  }
}

}  // namespace
}  // namespace xtm::test
