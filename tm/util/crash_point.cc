#include "util/crash_point.h"

#ifdef XATM_FAULT_INJECTION

#include <signal.h>
#include <unistd.h>

#include <mutex>
#include <cstdlib>
#include <cstring>
#include <string>

namespace xtm {
namespace {

// The environment is read at every point, so that a forked child that sets
// XATM_CRASH_AT gets its own target.
struct Target {
  std::mutex mu;
  std::string env;  // the XATM_CRASH_AT the fields below were parsed from
  std::string name;
  long nth = 1;
  long hits = 0;
};

Target& crash_target() {
  static Target t;
  return t;
}

Target& fault_target() {
  static Target t;
  return t;
}

// True when this pass of `name` is the one env asks for.
bool Hit(Target& t, const char* env, const char* name) {
  std::lock_guard<std::mutex> l(t.mu);
  if (t.env != env) {
    t.env = env;
    t.name = env;
    t.nth = 1;
    t.hits = 0;
    size_t colon = t.name.rfind(':');
    if (colon != std::string::npos) {
      t.nth = std::atol(t.name.c_str() + colon + 1);
      t.name.resize(colon);
    }
  }
  if (t.name != name) return false;
  return ++t.hits == t.nth;
}

Target& pause_target() {
  static Target t;
  return t;
}

void Say(const char* what, const char* name) {
  (void)!::write(2, what, std::strlen(what));
  (void)!::write(2, name, std::strlen(name));
  (void)!::write(2, "\n", 1);
}

}  // namespace

void CrashPoint(const char* name) {
  const char* env = std::getenv("XATM_CRASH_AT");
  if (env != nullptr && Hit(crash_target(), env, name)) {
    Say("xatm: crash point reached: ", name);
    ::kill(::getpid(), SIGKILL);
    ::pause();
  }
  // The whole process freezes here, as in a long GC or VM pause, until a
  // SIGCONT: its sockets, locks and sessions stay as they are.
  const char* pause_env = std::getenv("XATM_PAUSE_AT");
  if (pause_env != nullptr && Hit(pause_target(), pause_env, name)) {
    Say("xatm: pause point reached: ", name);
    // To this thread (tgkill): it stops before raise returns. A signal to
    // the process may be taken by another thread, and this one would run on
    // past the point (send a decision) until the group stop reaches it.
    ::raise(SIGSTOP);
  }
}

bool FaultPoint(const char* name) {
  const char* env = std::getenv("XATM_FAULT_AT");
  return env != nullptr && Hit(fault_target(), env, name);
}

}  // namespace xtm

#endif  // XATM_FAULT_INJECTION
