#include <unistd.h>

#include <filesystem>
#include <vector>

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
  // The next write went right after the last good record: its BATCH record
  // (which ScanLog leaves out), then the NODE record.
  log::LogScan scan;
  ASSERT_TRUE(log::ScanLog(d.path(), &scan).ok());
  EXPECT_EQ(end + log::kRecordHeaderSize + 8, scan.records.back().offset);
  EXPECT_FALSE(scan.torn_tail);
}

// A log whose last write holds several records: the ENDs of c0..c2 and the
// COMMIT of c5, appended together as xatmd does. Returns the offsets of that
// write's records; *end is where the write ends.
std::vector<uint64_t> WriteMultiRecordLastWrite(const std::string& dir, uint64_t* end) {
  WriteFiveCommits(dir);
  {
    auto l = OpenLogOrDie(dir);
    std::vector<log::EndRecord> ends;
    for (int i = 0; i < 3; ++i) ends.push_back(log::EndRecord{"c" + std::to_string(i)});
    EXPECT_TRUE(l->Append(MakeCommit("c5"), ends).ok());
    EXPECT_EQ(2u, l->Stats().batches);  // the NODE, then the ENDs and c5 in one write
  }
  log::LogScan scan;
  EXPECT_TRUE(log::ScanLog(dir, &scan).ok());
  std::vector<uint64_t> offsets;
  for (const log::LoggedRecord& r : scan.records) {
    if (r.type == log::RecordType::kEnd || (r.type == log::RecordType::kCommit && r.payload.find("c5") != std::string::npos)) {
      offsets.push_back(r.offset);
    }
  }
  EXPECT_EQ(4u, offsets.size());
  const log::LoggedRecord& last = scan.records.back();
  *end = last.offset + log::kRecordHeaderSize + last.payload.size();
  return offsets;
}

// A power loss during the sync of a write can leave any of its sectors on
// disk and others not: good records after a bad one, all in the last write.
// That write was never acknowledged; it is a torn tail, not corruption.
TEST(DecisionLogTornTail, MultiRecordLastWriteTornInTheMiddleIsATornTail) {
  TempDir src;
  uint64_t end = 0;
  const std::vector<uint64_t> at = WriteMultiRecordLastWrite(src.path(), &end);
  const std::string full = ReadFileOrDie(src / kSeg);
  const uint64_t write_begins = at[0] - log::kRecordHeaderSize - 8;  // its BATCH record
  // Each record of the write lost alone, the others on disk; and the BATCH record.
  std::vector<std::pair<uint64_t, uint64_t>> holes = {{write_begins, at[0]}};
  for (size_t i = 0; i < at.size(); ++i) holes.push_back({at[i], i + 1 < at.size() ? at[i + 1] : end});
  for (size_t h = 0; h < holes.size(); ++h) {
    const auto [from, to] = holes[h];
    SCOPED_TRACE("zeros from " + std::to_string(from) + " to " + std::to_string(to));
    TempDir d;
    std::string bytes = full;
    for (uint64_t i = from; i < to; ++i) bytes[i] = '\0';
    WriteFileOrDie(d / kSeg, bytes);
    {
      auto l = OpenLogOrDie(d.path());
      ASSERT_TRUE(l);
      // The log ends where the damage begins: the records of the torn write
      // before it count, those after it do not (c5 is never decided).
      const size_t ends_kept = h >= 2 ? h - 1 : 0;
      const log::LogState st = l->State();
      EXPECT_EQ(5u - ends_kept, st.open_commits.size());
      EXPECT_FALSE(st.open_commits.count("c5"));
      if (to == end) {
        EXPECT_TRUE(l->warnings().empty());  // zeros to the end: the clean end
      } else {
        ASSERT_EQ(1u, l->warnings().size());
        EXPECT_NE(std::string::npos, l->warnings()[0].find("torn tail at offset " + std::to_string(from)))
            << l->warnings()[0];
      }
      ASSERT_TRUE(l->Append(MakeCommit("after")).ok());
    }
    auto l = OpenLogOrDie(d.path());
    ASSERT_TRUE(l);
    EXPECT_TRUE(l->State().open_commits.count("after"));
    EXPECT_TRUE(l->warnings().empty());
  }
}

// An END is written at once but not synced; the COMMIT written after it syncs
// both. A power loss during that sync can keep the COMMIT's write and lose
// the END's: the COMMIT's write says the END's was not synced when it was
// made, so neither was acknowledged.
TEST(DecisionLogTornTail, UnsyncedWriteTornBeforeALaterWriteThatSyncsItIsATornTail) {
  TempDir d;
  WriteFiveCommits(d.path());
  uint64_t end_at = 0;
  {
    auto l = OpenLogOrDie(d.path());
    ASSERT_TRUE(l->Append(log::EndRecord{"c0"}).ok());
    ASSERT_TRUE(l->Append(MakeCommit("c5")).ok());
    EXPECT_EQ(3u, l->Stats().batches);
    EXPECT_EQ(2u, l->Stats().syncs);
  }
  log::LogScan scan;
  ASSERT_TRUE(log::ScanLog(d.path(), &scan).ok());
  for (const log::LoggedRecord& r : scan.records) {
    if (r.type == log::RecordType::kEnd) end_at = r.offset;
  }
  ASSERT_GT(end_at, 0u);
  std::string bytes = ReadFileOrDie(d / kSeg);
  for (uint64_t i = end_at; i < end_at + log::kRecordHeaderSize + 4; ++i) bytes[i] = '\0';
  WriteFileOrDie(d / kSeg, bytes);
  auto l = OpenLogOrDie(d.path());
  ASSERT_TRUE(l);
  EXPECT_EQ(5u, l->State().open_commits.size());  // c0..c4: the END lost, c5 never decided
  EXPECT_FALSE(l->State().open_commits.count("c5"));
  ASSERT_EQ(1u, l->warnings().size());
  EXPECT_NE(std::string::npos, l->warnings()[0].find("torn tail at offset " + std::to_string(end_at)));
}

// The same damage in a write that is not the last: a later write began after
// its sync had completed.
TEST(DecisionLogTornTail, DamageInAWriteFollowedByALaterWriteIsCorruption) {
  TempDir d;
  uint64_t end = 0;
  const std::vector<uint64_t> at = WriteMultiRecordLastWrite(d.path(), &end);
  {
    auto l = OpenLogOrDie(d.path());  // one more write: its NODE record
    ASSERT_TRUE(l);
  }
  std::string bytes = ReadFileOrDie(d / kSeg);
  for (uint64_t i = at[1]; i < at[2]; ++i) bytes[i] = '\0';  // END of c1
  WriteFileOrDie(d / kSeg, bytes);
  std::unique_ptr<DecisionLog> l;
  Status s = DecisionLog::Open({.dir = d.path()}, &l);
  ASSERT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("offset " + std::to_string(at[1]))) << s.message();
  EXPECT_NE(std::string::npos, s.message().find("written after the bad one was synced")) << s.message();
  EXPECT_EQ(bytes, ReadFileOrDie(d / kSeg));
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
