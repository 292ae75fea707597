// xatmd as a child process of a test, its stderr in a file; and small helpers
// for tests that run real server and client processes.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "xatm/xatm.h"

namespace xtm::test {

class XatmdProcess {
 public:
  XatmdProcess(std::string config, std::string log) : config_(std::move(config)), log_(std::move(log)) {}
  ~XatmdProcess();
  XatmdProcess(const XatmdProcess&) = delete;
  XatmdProcess& operator=(const XatmdProcess&) = delete;
  // Starts it and waits until it serves (fails the test if it does not).
  // crash_at / fault_at: XATM_CRASH_AT / XATM_FAULT_AT for it.
  void Start(const std::string& crash_at = "", const std::string& fault_at = "");
  // Starts it and waits until its log says `text` (e.g. "standing by").
  void StartUntil(const std::string& text);
  // Starts it to freeze itself (SIGSTOP) at crash point `point`.
  void StartPausingAt(const std::string& point);
  // Sends sig and waits for the process; its wait status.
  int Stop(int sig);
  // Waits for it to end by itself (a crash point); its wait status.
  int Wait();
  pid_t pid() const { return pid_; }
  bool Alive();
  // Its virtual memory size in KiB (from /proc).
  long VmSizeKb() const;
  std::string Log() const;
  // How often the log says `what` (e.g. "declared dead").
  int Count(const std::string& what) const;
  int MetricsPort() const;

 private:
  void Launch(const std::string& crash_at, const std::string& fault_at, const std::string& until,
              const std::string& pause_at = "");
  std::string config_, log_;
  pid_t pid_ = -1;
};

// The number after the last occurrence of prefix in text, or 0.
int NumberAfter(const std::string& text, const std::string& prefix);

// A command line's exit code and output (stdout and stderr).
struct ShellResult {
  int code = -1;
  std::string out;
};
ShellResult RunShell(const std::string& cmd);

// Polls cond every 50 ms for up to `seconds`.
bool WaitFor(const std::function<bool()>& cond, int seconds);

// The exit code of a child (128 + signal if killed).
int WaitChild(pid_t pid);
// The same of a wait status (XatmdProcess::Stop and Wait).
int WaitStatusCode(int status);

// In a forked child: the TM of config, or the child exits with `code`
// (saying why on stderr).
::xatm* OpenOrExit(const std::string& config, int code);

// Waits until child pid is stopped (SIGSTOP, a pause point); false if it
// exits or `seconds` pass first.
bool WaitStopped(pid_t pid, int seconds);

// Wakes child pid, stopped at a pause point, and waits for it: returns the
// int it writes to rc_fd (its xatm_commit code; a failed expectation and
// -1000 if it wrote none) and expects it to exit 0. Closes rc_fd.
int ResumeChild(pid_t pid, int rc_fd);

}  // namespace xtm::test
