#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log/log_test_util.h"
#include "log/segment_reader.h"
#include "support/fork_child.h"
#include "support/temp_dir.h"
#include "util/coding.h"
#include "util/crc32c.h"

namespace xtm::test {
namespace {

using log::DecisionLog;
using log::LogOptions;

TEST(Crc32c, MatchesKnownVectors) {
  // RFC 3720 B.4 test vectors.
  std::string zeros(32, '\0');
  EXPECT_EQ(0x8a9136aau, crc32c::Value(zeros.data(), zeros.size()));
  std::string ones(32, '\xff');
  EXPECT_EQ(0x62a8ab43u, crc32c::Value(ones.data(), ones.size()));
  EXPECT_EQ(0xe3069283u, crc32c::Value("123456789", 9));
  EXPECT_EQ(crc32c::Value("hello world", 11),
            crc32c::Extend(crc32c::Value("hello ", 6), "world", 5));
  EXPECT_EQ(0x12345678u, crc32c::Unmask(crc32c::Mask(0x12345678u)));
}

TEST(DecisionLog, NewLogGetsNodeIdAndFirstIncarnation) {
  TempDir d;
  auto l = OpenLogOrDie(d.path(), {.node_name = "node-a"});
  ASSERT_TRUE(l);
  EXPECT_EQ(8u, l->node().node_id.size());
  EXPECT_EQ(1u, l->node().incarnation);
  EXPECT_EQ("node-a", l->node().node_name);
}

TEST(DecisionLog, IncarnationIsBumpedAtEveryOpenAndNodeIdKept) {
  TempDir d;
  std::string id;
  for (uint32_t i = 1; i <= 3; ++i) {
    auto l = OpenLogOrDie(d.path());
    ASSERT_TRUE(l);
    if (i == 1) id = l->node().node_id;
    EXPECT_EQ(id, l->node().node_id);
    EXPECT_EQ(i, l->node().incarnation);
  }
}

TEST(DecisionLog, EndsAppendedWithACommitShareItsWriteAndSurviveReopen) {
  TempDir d;
  {
    auto l = OpenLogOrDie(d.path());
    ASSERT_TRUE(l);
    ASSERT_TRUE(l->Append(MakeCommit("a")).ok());
    ASSERT_TRUE(l->Append(MakeCommit("b")).ok());
    const log::LogStats before = l->Stats();
    ASSERT_TRUE(l->Append(MakeCommit("c"), {log::EndRecord{"a"}, log::EndRecord{"b"}}).ok());
    const log::LogStats after = l->Stats();
    EXPECT_EQ(before.batches + 1, after.batches);
    EXPECT_EQ(before.records + 3, after.records);
    EXPECT_EQ(before.syncs + 1, after.syncs);
    EXPECT_EQ(1u, l->State().open_commits.size());
  }
  auto l = OpenLogOrDie(d.path());
  ASSERT_TRUE(l);
  const log::LogState st = l->State();
  ASSERT_EQ(1u, st.open_commits.size());
  EXPECT_EQ(1u, st.open_commits.count("c"));
}

TEST(DecisionLog, RecordsRoundTripThroughReopen) {
  TempDir d;
  // A gtrid with NULs, quotes and high bytes.
  const std::string g1("g\0'\"\\\xff" "1", 7), g2 = "g2", g3 = "g3";
  {
    auto l = OpenLogOrDie(d.path());
    ASSERT_TRUE(l);
    ASSERT_TRUE(l->Append(MakeCommit(g1, 3)).ok());
    ASSERT_TRUE(l->Append(MakeCommit(g2)).ok());
    ASSERT_TRUE(l->Append(MakeCommit(g3)).ok());
    ASSERT_TRUE(l->Append(log::EndRecord{g2}).ok());
    log::HeuristicRecord h;
    h.gtrid = g3;
    h.rm = "ledger";
    h.bqual = "b1";
    h.outcome = log::HeuristicOutcome::kRolledBack;
    h.who = "alice";
    h.why = "customer called";
    h.time_ms = 42;
    ASSERT_TRUE(l->Append(h).ok());
    h.rm = "bank";
    ASSERT_TRUE(l->Append(h).ok());
    ASSERT_TRUE(l->Append(log::ForgetRecord{g3, "bank", "b1"}).ok());
    ASSERT_TRUE(l->Sync().ok());
  }
  auto l = OpenLogOrDie(d.path());
  ASSERT_TRUE(l);
  log::LogState st = l->State();
  ASSERT_EQ(2u, st.open_commits.size());
  ASSERT_TRUE(st.open_commits.count(g1));
  EXPECT_EQ(3u, st.open_commits[g1].branches.size());
  EXPECT_EQ(MakeCommit(g1, 3).branches, st.open_commits[g1].branches);
  EXPECT_EQ(0x78617463, st.open_commits[g1].format_id);
  EXPECT_TRUE(st.open_commits.count(g3));
  EXPECT_FALSE(st.open_commits.count(g2));
  ASSERT_EQ(1u, st.heuristics.size());
  const log::HeuristicRecord& h = st.heuristics.begin()->second;
  EXPECT_EQ("ledger", h.rm);
  EXPECT_EQ("alice", h.who);
  EXPECT_EQ("customer called", h.why);
  EXPECT_EQ(log::HeuristicOutcome::kRolledBack, h.outcome);
  EXPECT_TRUE(l->warnings().empty());
}

TEST(DecisionLog, UnforcedEndIsWrittenByClose) {
  TempDir d;
  {
    auto l = OpenLogOrDie(d.path());
    ASSERT_TRUE(l->Append(MakeCommit("x")).ok());
    ASSERT_TRUE(l->Append(log::EndRecord{"x"}).ok());
  }
  auto l = OpenLogOrDie(d.path());
  EXPECT_TRUE(l->State().open_commits.empty());
}

TEST(DecisionLog, MissingDirIsAnErrorThatSaysToCreateIt) {
  TempDir d;
  std::unique_ptr<DecisionLog> l;
  Status s = DecisionLog::Open({.dir = d / "nope"}, &l);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find(d / "nope"));
  EXPECT_NE(std::string::npos, s.message().find("mkdir -p"));
  EXPECT_FALSE(l);
  struct stat st;
  EXPECT_NE(0, ::stat((d / "nope").c_str(), &st)) << "the directory must not be created";
}

TEST(DecisionLog, FileInsteadOfDirIsRefused) {
  TempDir d;
  WriteFileOrDie(d / "f", "x");
  std::unique_ptr<DecisionLog> l;
  Status s = DecisionLog::Open({.dir = d / "f"}, &l);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("not a directory"));
}

TEST(DecisionLog, UnwritableDirIsRefusedWithThePath) {
  if (::geteuid() == 0) {
    // root writes anywhere; test as an unprivileged child instead.
    TempDir d;
    ::chmod(d.path().c_str(), 0555);
    pid_t pid = ForkChild();
    if (pid == 0) {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
      std::unique_ptr<DecisionLog> l;
      Status s = DecisionLog::Open({.dir = d.path()}, &l);
      bool good = s.IsInvalidArgument() && s.message().find(d.path()) != std::string::npos &&
                  s.message().find("not writable") != std::string::npos;
      ::_exit(good ? 0 : 1);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::chmod(d.path().c_str(), 0755);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(0, WEXITSTATUS(status));
    return;
  }
  TempDir d;
  ::chmod(d.path().c_str(), 0555);
  std::unique_ptr<DecisionLog> l;
  Status s = DecisionLog::Open({.dir = d.path()}, &l);
  ::chmod(d.path().c_str(), 0755);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("not writable"));
}

TEST(DecisionLog, SecondOpenerIsRefusedNamingTheHolderPid) {
  TempDir d;
  auto first = OpenLogOrDie(d.path());
  ASSERT_TRUE(first);
  std::unique_ptr<DecisionLog> second;
  Status s = DecisionLog::Open({.dir = d.path()}, &second);
  ASSERT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("process " + std::to_string(::getpid())));
  EXPECT_NE(std::string::npos, s.message().find("xatmd"));
  // A reader is refused too, unless it forces a read-only look.
  s = DecisionLog::Open({.dir = d.path(), .read_only = true}, &second);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  s = DecisionLog::Open({.dir = d.path(), .read_only = true, .force = true}, &second);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(DecisionLog, AnotherProcessHoldingTheLogIsNamed) {
  TempDir d;
  int ready[2], done[2];
  ASSERT_EQ(0, ::pipe(ready));
  ASSERT_EQ(0, ::pipe(done));
  pid_t pid = ForkChild();
  if (pid == 0) {
    std::unique_ptr<DecisionLog> l;
    if (!DecisionLog::Open({.dir = d.path()}, &l).ok()) ::_exit(1);
    char c = 'r';
    if (::write(ready[1], &c, 1) != 1) ::_exit(1);
    if (::read(done[0], &c, 1) < 0) ::_exit(1);
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(1, ::read(ready[0], &c, 1));
  std::unique_ptr<DecisionLog> l;
  Status s = DecisionLog::Open({.dir = d.path()}, &l);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("process " + std::to_string(pid)));
  ASSERT_EQ(1, ::write(done[1], "x", 1));
  int status;
  ::waitpid(pid, &status, 0);
  // Once the holder is gone the log opens.
  EXPECT_TRUE(DecisionLog::Open({.dir = d.path()}, &l).ok());
}

TEST(DecisionLog, NewerFormatVersionIsRefusedAndLeftUntouched) {
  TempDir d;
  { OpenLogOrDie(d.path()); }
  std::string seg = d / "segment-000000000001.xlog";
  std::string bytes = ReadFileOrDie(seg);
  EncodeFixed32(&bytes[8], log::kFormatVersion + 1);
  WriteFileOrDie(seg, bytes);
  std::unique_ptr<DecisionLog> l;
  Status s = DecisionLog::Open({.dir = d.path()}, &l);
  ASSERT_TRUE(s.IsNotSupported()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find(seg));
  EXPECT_NE(std::string::npos, s.message().find("newer xatm"));
  EXPECT_EQ(bytes, ReadFileOrDie(seg));
}

TEST(DecisionLog, ForeignFileWithSegmentNameIsCorruption) {
  TempDir d;
  WriteFileOrDie(d / "segment-000000000001.xlog", "this is not a log at all, just text");
  std::unique_ptr<DecisionLog> l;
  Status s = DecisionLog::Open({.dir = d.path()}, &l);
  ASSERT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("offset 0"));
}

TEST(DecisionLog, ScanLogListsEveryRecordInOrder) {
  TempDir d;
  {
    auto l = OpenLogOrDie(d.path());
    ASSERT_TRUE(l->Append(MakeCommit("a")).ok());
    ASSERT_TRUE(l->Append(log::EndRecord{"a"}).ok());
  }
  log::LogScan scan;
  ASSERT_TRUE(log::ScanLog(d.path(), &scan).ok());
  ASSERT_EQ(3u, scan.records.size());
  EXPECT_EQ(log::RecordType::kNode, scan.records[0].type);
  EXPECT_EQ(log::RecordType::kCommit, scan.records[1].type);
  EXPECT_EQ(log::RecordType::kEnd, scan.records[2].type);
  EXPECT_FALSE(scan.torn_tail);
}

}  // namespace
}  // namespace xtm::test
