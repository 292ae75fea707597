// What the parts of the TM (transaction_manager.cc, transaction.cc,
// last_resource.cc, background.cc, recovery.cc) share: the per-thread RM
// state and the small helpers for XA codes. Not part of any interface.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/gtrid.h"
#include "core/transaction_manager.h"
#include "registry.h"

namespace xtm::tm {

inline const char* OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kOk: return "committed";
    case Outcome::kRolledBack: return "rolled back";
    case Outcome::kTimedOut: return "rolled back (timeout)";
    case Outcome::kPending: return "committed, some branches left to recovery";
    case Outcome::kHeurMix: return "heuristic mix";
    case Outcome::kHeurHaz: return "heuristic hazard";
    case Outcome::kHeurRb: return "heuristic rollback";
    case Outcome::kUnknown: return "outcome unknown";
    case Outcome::kInvalid: return "invalid call";
    case Outcome::kRmError: return "failed (resource manager)";
    case Outcome::kNotFound: return "not found";
    case Outcome::kLogError: return "failed (decision log)";
    case Outcome::kFenced: return "rolled back (session ended)";
  }
  return "?";
}

using Clock = std::chrono::steady_clock;

// Background phase two: its threads, and how many hand-offs may wait for
// them before callers finish their own phase two again (so that a backlog
// never builds up behind the prepared branches' locks).
constexpr int kPhaseTwoThreads = 4;
constexpr size_t kPhaseTwoQueue = 2 * kPhaseTwoThreads;

// The RMs opened on this thread. When the thread ends, xatm's own RMs close
// their connections themselves (their per-thread state is thread_local too);
// third-party switches get an xa_close.
struct ThreadRms {
  struct Open {
    xa_switch_t* sw = nullptr;
    uint64_t epoch = 0;  // the TM's session epoch it was opened in
    int backend_pid = 0;  // PostgreSQL: the backend registered for branches (0: none yet)
    std::string backend_start;
  };
  std::map<int, Open> open;
  // Branches this thread holds prepared of transactions whose commit
  // returned "unknown" (a SQLite branch lives in the thread's connection):
  // settled at the next Begin once the store can tell the outcome.
  struct InDoubt {
    const TransactionManager* tm;
    Rm* rm;
    XID xid;
    std::string gtrid;
  };
  std::vector<InDoubt> in_doubt;
  ~ThreadRms() {
    for (auto& [rmid, o] : open) {
      if (!rm::IsXatmSwitch(o.sw)) o.sw->xa_close_entry(const_cast<char*>(""), rmid, TMNOFLAGS);
    }
  }
};
inline thread_local ThreadRms tls_rms;

inline bool IsRollbackCode(int rc) { return rc >= XA_RBBASE && rc <= XA_RBEND; }

inline const char* XaName(int rc) {
  switch (rc) {
    case XA_OK: return "XA_OK";
    case XA_RDONLY: return "XA_RDONLY";
    case XA_RETRY: return "XA_RETRY";
    case XA_HEURMIX: return "XA_HEURMIX";
    case XA_HEURRB: return "XA_HEURRB";
    case XA_HEURCOM: return "XA_HEURCOM";
    case XA_HEURHAZ: return "XA_HEURHAZ";
    case XAER_ASYNC: return "XAER_ASYNC";
    case XAER_RMERR: return "XAER_RMERR";
    case XAER_NOTA: return "XAER_NOTA";
    case XAER_INVAL: return "XAER_INVAL";
    case XAER_PROTO: return "XAER_PROTO";
    case XAER_RMFAIL: return "XAER_RMFAIL";
    case XAER_DUPID: return "XAER_DUPID";
    case XAER_OUTSIDE: return "XAER_OUTSIDE";
    default: return IsRollbackCode(rc) ? "XA_RB*" : "?";
  }
}

// xa_commit(TMONEPHASE), again while the RM answers XA_RETRY (for up to a second).
template <typename B>
int CommitOnePhase(B& b) {
  int rc;
  for (int attempt = 0;; ++attempt) {
    rc = b.rm->sw->xa_commit_entry(&b.xid, b.rm->rmid, TMONEPHASE);
    if (rc != XA_RETRY || attempt >= 100) return rc;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

inline std::string Describe(int rc, const std::string& rm_message) {
  std::string s = XaName(rc);
  if (IsRollbackCode(rc)) s = "XA_RB (" + std::to_string(rc) + ")";
  if (!rm_message.empty()) s += ": " + rm_message;
  return s;
}

// Names this TM's node and incarnation in the RMs' sessions, so that recovery
// can find (and end) the sessions of a dead incarnation.
inline std::string SessionTag(const std::string& node_id, uint32_t incarnation) {
  return "xatm/" + ToHex(node_id) + "/" + std::to_string(incarnation);
}

// A gtrid in hex, turned into text only when a log line is written (debug
// and info lines are not, by default).
struct LazyHex {
  const std::string& bytes;
};

}  // namespace xtm::tm

template <>
struct fmt::formatter<xtm::tm::LazyHex> : fmt::formatter<std::string_view> {
  auto format(const xtm::tm::LazyHex& h, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(xtm::tm::ToHex(h.bytes), ctx);
  }
};
