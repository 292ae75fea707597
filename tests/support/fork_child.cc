#include "support/fork_child.h"

#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>

namespace xtm::test {
namespace {

std::atomic<int> g_gated{0};

// The threads of this process beyond the caller and the gated ones, by name;
// empty if there are none.
std::string OtherThreads() {
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return "";
  int tasks = 0;
  std::string names;
  const std::string self = std::to_string(::gettid());
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    ++tasks;
    if (self == e->d_name) continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    names += " " + std::string(e->d_name) + "(" + name + ")";
  }
  ::closedir(d);
  return tasks > 1 + g_gated.load() ? names : "";
}

}  // namespace

std::shared_mutex& ForkGate() {
  static std::shared_mutex gate;
  return gate;
}

GatedThread::GatedThread() { ++g_gated; }
GatedThread::~GatedThread() { --g_gated; }

pid_t ForkChild() {
  std::unique_lock<std::shared_mutex> hold(ForkGate());
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer runs a thread of its own, and takes its runtime's locks
  // around fork() itself: the check is for the other builds.
  return ::fork();
#endif
  // A gated thread that just started or is exiting is briefly counted wrong.
  std::string others = OtherThreads();
  for (int i = 0; i < 2000 && !others.empty(); ++i) {
    ::usleep(1000);
    others = OtherThreads();
  }
  if (!others.empty()) {
    std::fprintf(stderr,
                 "ForkChild: other threads run in the test process:%s\n"
                 "(close the TM, the client or the threads the test started before forking)\n",
                 others.c_str());
    std::abort();
  }
  return ::fork();
}

}  // namespace xtm::test
