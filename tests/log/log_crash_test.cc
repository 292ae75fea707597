// A child process appends COMMIT records from several threads and reports
// each acknowledged append on a pipe; the parent SIGKILLs it mid-stream,
// reopens the log, and checks that every acknowledged record is there.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "log/log_test_util.h"
#include "support/fork_child.h"
#include "support/temp_dir.h"

namespace xtm::test {
namespace {

[[noreturn]] void ChildAppends(const std::string& dir, int ack_fd, int round) {
  std::unique_ptr<log::DecisionLog> l;
  log::LogOptions o;
  o.dir = dir;
  o.segment_bytes = 16 << 10;  // rolls segments while it runs
  if (!log::DecisionLog::Open(o, &l).ok()) ::_exit(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (uint32_t i = 0;; ++i) {
        uint32_t id = (static_cast<uint32_t>(round) << 24) | (static_cast<uint32_t>(t) << 20) | i;
        std::string g = "k" + std::to_string(id);
        if (!l->Append(MakeCommit(g)).ok()) ::_exit(3);
        // Acknowledged: it must survive. A 4-byte pipe write is atomic.
        if (::write(ack_fd, &id, sizeof id) != sizeof id) ::_exit(4);
      }
    });
  }
  for (auto& th : threads) th.join();
  ::_exit(0);
}

TEST(DecisionLogCrash, EveryAcknowledgedCommitSurvivesSigkill) {
  TempDir d;
  std::set<uint32_t> acked;
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    int fds[2];
    ASSERT_EQ(0, ::pipe(fds));
    pid_t pid = ForkChild();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      ChildAppends(d.path(), fds[1], round);
    }
    ::close(fds[1]);
    // Let it run for a different number of acknowledgements each round.
    const size_t want = 200 + 350 * static_cast<size_t>(round);
    size_t got = 0;
    uint32_t id;
    while (got < want && ::read(fds[0], &id, sizeof id) == sizeof id) {
      acked.insert(id);
      ++got;
    }
    ASSERT_EQ(want, got) << "the child stopped early";
    ::kill(pid, SIGKILL);
    while (::read(fds[0], &id, sizeof id) == sizeof id) acked.insert(id);
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);

    auto l = OpenLogOrDie(d.path());
    ASSERT_TRUE(l);
    log::LogState st = l->State();
    size_t missing = 0;
    for (uint32_t a : acked) missing += st.open_commits.count("k" + std::to_string(a)) ? 0 : 1;
    EXPECT_EQ(0u, missing) << "of " << acked.size() << " acknowledged commits";
    // Each round the child and then the parent opened the log.
    EXPECT_EQ(static_cast<uint32_t>(2 * (round + 1)), l->node().incarnation);
  }
}

}  // namespace
}  // namespace xtm::test
