#include <filesystem>

#include "log/log_test_util.h"
#include "support/temp_dir.h"

namespace xtm::test {
namespace {

TEST(DecisionLogSegments, LogStaysBoundedOverAMillionDecisions) {
  TempDir d;
  constexpr uint64_t kSegment = 64 << 10;
  constexpr int kDecisions = 1000000;
  {
    // Space, not durability, is measured here: syncs off.
    auto l = OpenLogOrDie(d.path(), {.segment_bytes = kSegment, .sync = false});
    ASSERT_TRUE(l);
    // Ten transactions stay in doubt for the whole run, and one heuristic
    // outcome is never forgotten: they must be carried from segment to segment.
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(l->Append(MakeCommit("stuck" + std::to_string(i))).ok());
    log::HeuristicRecord h;
    h.gtrid = "heur";
    h.rm = "pg";
    h.outcome = log::HeuristicOutcome::kMixed;
    h.who = "xatm";
    ASSERT_TRUE(l->Append(h).ok());
    uint64_t max_bytes = 0;
    for (int i = 0; i < kDecisions; ++i) {
      std::string g = "g" + std::to_string(i);
      ASSERT_TRUE(l->Append(MakeCommit(g)).ok());
      ASSERT_TRUE(l->Append(log::EndRecord{g}).ok());
      if (i % 10000 == 0) max_bytes = std::max(max_bytes, DirBytes(d.path()));
    }
    // One segment's worth of records plus the carried snapshot; never the
    // ~100 MB a million decisions take.
    EXPECT_LT(max_bytes, 3 * kSegment);
    EXPECT_LE(l->SegmentFiles().size(), 2u);
    EXPECT_GT(l->Stats().segments_deleted, 1000u);
  }
  auto l = OpenLogOrDie(d.path());
  log::LogState st = l->State();
  EXPECT_EQ(10u, st.open_commits.size());
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(st.open_commits.count("stuck" + std::to_string(i)));
  EXPECT_EQ(1u, st.heuristics.size());
  EXPECT_EQ(1u, l->SegmentFiles().size());
}

TEST(DecisionLogSegments, LeftoverTempSegmentFromACrashedRollIsRemoved) {
  TempDir d;
  { OpenLogOrDie(d.path()); }
  WriteFileOrDie(d / "segment-000000000002.xlog.tmp", "half-written");
  auto l = OpenLogOrDie(d.path());
  ASSERT_TRUE(l);
  EXPECT_FALSE(std::filesystem::exists(d / "segment-000000000002.xlog.tmp"));
}

}  // namespace
}  // namespace xtm::test
