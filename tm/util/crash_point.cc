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

Target& target() {
  static Target t;
  return t;
}

}  // namespace

void CrashPoint(const char* name) {
  const char* env = std::getenv("XATM_CRASH_AT");
  if (env == nullptr) return;
  Target& t = target();
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
  if (t.name != name) return;
  if (++t.hits != t.nth) return;
  const char msg[] = "xatm: crash point reached: ";
  (void)!::write(2, msg, sizeof msg - 1);
  (void)!::write(2, name, std::strlen(name));
  (void)!::write(2, "\n", 1);
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

}  // namespace xtm

#endif  // XATM_FAULT_INJECTION
