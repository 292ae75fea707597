// Named crash points for fault-injection tests.
//
// Compiled in only with the CMake option XATM_FAULT_INJECTION. At run time
// XATM_CRASH_AT=name[:nth] makes the process SIGKILL itself the nth time (1
// by default) it passes the point called name. The list of points is in
// docs/testing.md.
#pragma once

#ifdef XATM_FAULT_INJECTION
namespace xtm {
void CrashPoint(const char* name);
}  // namespace xtm
#define XATM_CRASH_POINT(name) ::xtm::CrashPoint(name)
#else
#define XATM_CRASH_POINT(name) ((void)0)
#endif
