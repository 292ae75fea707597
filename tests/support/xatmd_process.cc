#include "support/fork_child.h"
#include "support/xatmd_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "xatm/xatm.h"

namespace xtm::test {

using Clock = std::chrono::steady_clock;

XatmdProcess::~XatmdProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void XatmdProcess::StartUntil(const std::string& text) { Launch("", "", text); }

void XatmdProcess::StartPausingAt(const std::string& point) { Launch("", "", "serving:", point); }

void XatmdProcess::Start(const std::string& crash_at, const std::string& fault_at) {
  Launch(crash_at, fault_at, "serving:");
}

void XatmdProcess::Launch(const std::string& crash_at, const std::string& fault_at, const std::string& until,
                          const std::string& pause_at) {
  const size_t before = Log().size();
  pid_ = ForkChild();
  if (pid_ == 0) {
    if (!crash_at.empty()) ::setenv("XATM_CRASH_AT", crash_at.c_str(), 1);
    if (!fault_at.empty()) ::setenv("XATM_FAULT_AT", fault_at.c_str(), 1);
    if (pause_at.empty()) ::unsetenv("XATM_PAUSE_AT");
    else ::setenv("XATM_PAUSE_AT", pause_at.c_str(), 1);
    FILE* f = std::fopen(log_.c_str(), "a");
    // Both to the log: a server outliving an aborted test must not hold the
    // test's output pipe open (ctest would wait for it).
    ::dup2(fileno(f), 1);
    ::dup2(fileno(f), 2);
    ::execl(XATM_XATMD, "xatmd", "--config", config_.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    if (Log().find(until, before) != std::string::npos) return;
    int st;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL() << "xatmd exited at start:\n" << Log();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL() << "xatmd did not start:\n" << Log();
}

int XatmdProcess::Stop(int sig) {
  ::kill(pid_, sig);
  int st = 0;
  ::waitpid(pid_, &st, 0);
  pid_ = -1;
  return st;
}

int XatmdProcess::Wait() {
  int st = 0;
  ::waitpid(pid_, &st, 0);
  pid_ = -1;
  return st;
}

bool XatmdProcess::Alive() {
  int st;
  return pid_ > 0 && ::waitpid(pid_, &st, WNOHANG) == 0;
}

long XatmdProcess::VmSizeKb() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmSize:", 0) == 0) return std::atol(line.c_str() + 7);
  }
  return -1;
}

std::string XatmdProcess::Log() const {
  std::ifstream in(log_);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

int XatmdProcess::Count(const std::string& what) const {
  const std::string log = Log();
  int n = 0;
  for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
  return n;
}

int XatmdProcess::MetricsPort() const { return NumberAfter(Log(), "metrics on http://127.0.0.1:"); }

int NumberAfter(const std::string& text, const std::string& prefix) {
  const size_t at = text.rfind(prefix);
  return at == std::string::npos ? 0 : std::atoi(text.c_str() + at + prefix.size());
}

ShellResult RunShell(const std::string& cmd) {
  ShellResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

bool WaitFor(const std::function<bool()>& cond, int seconds) {
  const auto deadline = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return cond();
}

int WaitChild(pid_t pid) {
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WaitStatusCode(st);
}

xatm* OpenOrExit(const std::string& config, int code) {
  xatm* tm = nullptr;
  if (xatm_open(config.c_str(), &tm) != XATM_OK) {
    std::fprintf(stderr, "xatm_open: %s\n", xatm_errmsg(tm));
    ::_exit(code);
  }
  return tm;
}

int WaitStatusCode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

bool WaitStopped(pid_t pid, int seconds) {
  const auto deadline = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < deadline) {
    int st = 0;
    const pid_t r = ::waitpid(pid, &st, WNOHANG | WUNTRACED);
    if (r == pid && WIFSTOPPED(st)) return true;
    if (r == pid) return false;  // it exited
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

int ResumeChild(pid_t pid, int rc_fd) {
  ::kill(pid, SIGCONT);
  int rc = -1000;  // no answer
  EXPECT_EQ(static_cast<ssize_t>(sizeof rc), ::read(rc_fd, &rc, sizeof rc)) << "child " << pid << " wrote no answer";
  ::close(rc_fd);
  EXPECT_EQ(0, WaitChild(pid));
  return rc;
}

}  // namespace xtm::test
