// fork() for tests whose child goes on running the test's own code.
//
// The child of a multithreaded process inherits every lock another thread
// held at that instant, and nobody in the child will release it. Under
// AddressSanitizer (the runtimes of GCC 12 and clang 16 alike) one of its
// allocator locks (the quarantine's, the large-allocation list's) is then
// held forever, and the child's first malloc or free hangs: a test that
// forks while a TM's reaper or phase-two thread allocates hangs once in a
// few hundred forks. So a test forks only when no other thread of its
// process runs: a TM is closed before the fork, and the threads that the
// test support starts itself (the proxies) take ForkGate() around all their
// work and wait at it while a fork is under way.
#pragma once

#include <sys/types.h>

#include <shared_mutex>

namespace xtm::test {

// Taken shared by gated threads around everything they do but blocking
// system calls; taken exclusively by ForkChild.
std::shared_mutex& ForkGate();

// Declares the calling thread gated for as long as the object lives: it
// allocates only while holding ForkGate() shared. Create it first thing in
// the thread's function.
class GatedThread {
 public:
  GatedThread();
  ~GatedThread();
  GatedThread(const GatedThread&) = delete;
  GatedThread& operator=(const GatedThread&) = delete;
};

// fork(), once every other thread of the process is gated. If another thread
// still runs after two seconds, prints the threads and aborts the test
// program: the test must close what started them before it forks. (Under
// ThreadSanitizer, whose runtime has a thread of its own and locks itself
// around fork, it only forks.)
pid_t ForkChild();

}  // namespace xtm::test
