#include <unistd.h>

#include <filesystem>

#include "log/log_test_util.h"
#include "support/temp_dir.h"

namespace xtm::test {
namespace {

using log::DecisionLog;

const char kSeg[] = "segment-000000000001.xlog";

// A log with the NODE record and commits c0..c4; returns the file offset at
// which the last record (c4) starts, and in *end where it ends.
uint64_t WriteFiveCommits(const std::string& dir, uint64_t* end = nullptr) {
  {
    auto l = OpenLogOrDie(dir);
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(l->Append(MakeCommit("c" + std::to_string(i))).ok());
  }
  log::LogScan scan;
  EXPECT_TRUE(log::ScanLog(dir, &scan).ok());
  EXPECT_EQ(6u, scan.records.size());
  const log::LoggedRecord& last = scan.records.back();
  if (end) *end = last.offset + log::kRecordHeaderSize + last.payload.size();
  return last.offset;
}

TEST(DecisionLogTornTail, TornTailAtEveryOffsetOfTheLastRecordIsCutAndTheRestKept) {
  TempDir src;
  uint64_t end = 0;
  const uint64_t last = WriteFiveCommits(src.path(), &end);
  const std::string full = ReadFileOrDie(src / kSeg).substr(0, end);
  ASSERT_GT(full.size(), last);
  for (uint64_t cut = last; cut < full.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    TempDir d;
    WriteFileOrDie(d / kSeg, full.substr(0, cut));
    {
      auto l = OpenLogOrDie(d.path());
      ASSERT_TRUE(l);
      log::LogState st = l->State();
      EXPECT_EQ(4u, st.open_commits.size());
      EXPECT_FALSE(st.open_commits.count("c4"));
      if (cut > last) {
        ASSERT_EQ(1u, l->warnings().size());
        EXPECT_NE(std::string::npos, l->warnings()[0].find("torn tail at offset " +
                                                             std::to_string(last)));
      } else {
        EXPECT_TRUE(l->warnings().empty());
      }
      // Appends after a cut tail land on a clean boundary.
      ASSERT_TRUE(l->Append(MakeCommit("after")).ok());
    }
    auto l = OpenLogOrDie(d.path());
    ASSERT_TRUE(l);
    EXPECT_TRUE(l->State().open_commits.count("after"));
    EXPECT_TRUE(l->warnings().empty());
  }
}

TEST(DecisionLogTornTail, BadChecksumOfTheVeryLastRecordIsATornTail) {
  TempDir d;
  uint64_t end = 0;
  const uint64_t last = WriteFiveCommits(d.path(), &end);
  std::string bytes = ReadFileOrDie(d / kSeg);
  bytes[end - 1] ^= 0x40;
  WriteFileOrDie(d / kSeg, bytes);
  auto l = OpenLogOrDie(d.path());
  ASSERT_TRUE(l);
  EXPECT_EQ(4u, l->State().open_commits.size());
  ASSERT_EQ(1u, l->warnings().size());
  EXPECT_NE(std::string::npos, l->warnings()[0].find(std::to_string(last)));
}

TEST(DecisionLogTornTail, ZerosAfterTheLastRecordAreTheCleanEnd) {
  TempDir d;
  uint64_t end = 0;
  WriteFiveCommits(d.path(), &end);
  {
    auto l = OpenLogOrDie(d.path());
    ASSERT_TRUE(l);
    EXPECT_EQ(5u, l->State().open_commits.size());
    EXPECT_TRUE(l->warnings().empty());
  }
  // The next record went right after the last good one.
  log::LogScan scan;
  ASSERT_TRUE(log::ScanLog(d.path(), &scan).ok());
  EXPECT_EQ(end, scan.records.back().offset);
  EXPECT_FALSE(scan.torn_tail);
}

TEST(DecisionLogTornTail, PartialRecordFollowedByZerosIsATornTail) {
  TempDir d;
  uint64_t end = 0;
  const uint64_t last = WriteFiveCommits(d.path(), &end);
  std::string bytes = ReadFileOrDie(d / kSeg);
  // As if the last write reached the disk only in part: its second half is zeros.
  for (uint64_t i = last + (end - last) / 2; i < end; ++i) bytes[i] = '\0';
  WriteFileOrDie(d / kSeg, bytes);
  auto l = OpenLogOrDie(d.path());
  ASSERT_TRUE(l);
  EXPECT_EQ(4u, l->State().open_commits.size());
  ASSERT_EQ(1u, l->warnings().size());
  EXPECT_NE(std::string::npos, l->warnings()[0].find("torn tail at offset " + std::to_string(last)));
}

TEST(DecisionLogTornTail, FlippedByteInTheMiddleIsCorruptionWithTheOffset) {
  TempDir d;
  WriteFiveCommits(d.path());
  log::LogScan scan;
  ASSERT_TRUE(log::ScanLog(d.path(), &scan).ok());
  ASSERT_EQ(6u, scan.records.size());
  const uint64_t victim = scan.records[2].offset;  // c1
  std::string bytes = ReadFileOrDie(d / kSeg);
  const std::string before = bytes;
  bytes[victim + 12] ^= 0x01;
  WriteFileOrDie(d / kSeg, bytes);
  std::unique_ptr<DecisionLog> l;
  Status s = DecisionLog::Open({.dir = d.path()}, &l);
  ASSERT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("offset " + std::to_string(victim))) << s.message();
  EXPECT_NE(std::string::npos, s.message().find(kSeg));
  // Never rewritten or truncated.
  EXPECT_EQ(bytes, ReadFileOrDie(d / kSeg));
  // The reader used by `xatm log verify` says the same.
  EXPECT_TRUE(log::ScanLog(d.path(), &scan).IsCorruption());
}

TEST(DecisionLogTornTail, FlippedByteInEveryPositionOfAMiddleRecordIsDetected) {
  TempDir src;
  WriteFiveCommits(src.path());
  log::LogScan scan;
  ASSERT_TRUE(log::ScanLog(src.path(), &scan).ok());
  const uint64_t begin = scan.records[3].offset, end = scan.records[4].offset;
  const std::string full = ReadFileOrDie(src / kSeg);
  for (uint64_t pos = begin; pos < end; ++pos) {
    SCOPED_TRACE("flip at " + std::to_string(pos));
    TempDir d;
    std::string bytes = full;
    bytes[pos] ^= 0x10;
    WriteFileOrDie(d / kSeg, bytes);
    std::unique_ptr<DecisionLog> l;
    Status s = DecisionLog::Open({.dir = d.path()}, &l);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  }
}

TEST(DecisionLogTornTail, TornRecordInAnOlderSegmentIsCorruption) {
  TempDir d;
  uint64_t end = 0;
  WriteFiveCommits(d.path(), &end);
  // Segment 1 becomes segment 2 whole, and a copy cut inside its last record
  // stays as 1: the torn end of segment 1 is not the end of the log.
  const std::string bytes = ReadFileOrDie(d / kSeg);
  std::filesystem::rename(d / kSeg, d / "segment-000000000002.xlog");
  WriteFileOrDie(d / kSeg, bytes.substr(0, end - 3));
  std::unique_ptr<DecisionLog> l;
  Status s = DecisionLog::Open({.dir = d.path()}, &l);
  ASSERT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("not the newest"));
  EXPECT_NE(std::string::npos, s.message().find(kSeg));
}

}  // namespace
}  // namespace xtm::test
