// Named crash points for fault-injection tests.
//
// Compiled in only with the CMake option XATM_FAULT_INJECTION. At run time
// XATM_CRASH_AT=name[:nth] makes the process SIGKILL itself the nth time (1
// by default) it passes the point called name. The list of points is in
// docs/testing.md.
//
// XATM_PAUSE_AT=name[:nth] freezes the whole process there instead (SIGSTOP,
// as a long GC or VM pause would) until it gets a SIGCONT: every crash point
// is also a pause point, for tests of resolvers racing a frozen process.
//
// A fault point is the same without the crash: XATM_FAULT_AT=name[:nth]
// makes XATM_FAULT_POINT(name) true the nth time it is passed (and false
// otherwise, and always without XATM_FAULT_INJECTION); the code then fails
// in the way the point describes (e.g. drops a connection).
#pragma once

#ifdef XATM_FAULT_INJECTION
namespace xtm {
void CrashPoint(const char* name);
bool FaultPoint(const char* name);
}  // namespace xtm
#define XATM_CRASH_POINT(name) ::xtm::CrashPoint(name)
#define XATM_FAULT_POINT(name) ::xtm::FaultPoint(name)
#else
#define XATM_CRASH_POINT(name) ((void)0)
#define XATM_FAULT_POINT(name) false
#endif
