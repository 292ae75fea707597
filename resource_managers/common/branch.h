// The XA state machine of one connection's branch, shared by both RMs: what
// the XA state tables say about xa_start with TMJOIN/TMRESUME, xa_end and the
// xa_recover cursor. What differs between RMs (beginning, ending, preparing
// the work) stays in each RM.
#pragma once

#include <string>
#include <vector>

#include "xatm/xa.h"

namespace xtm::rm {

// A connection holds one branch at a time (it is one session transaction).
enum class BranchState {
  kNone,          // S0: no branch on this connection
  kActive,        // S1, associated with the thread
  kSuspended,     // S1, association suspended (TMSUSPEND)
  kIdle,          // S2: ended with TMSUCCESS, not yet prepared
  kRollbackOnly,  // S4: already rolled back; later calls report the rollback code
  kPrepared,      // S3 and still on this connection (the SQLite RM only)
};

// The answer of a check: code XA_OK means go on.
struct Verdict {
  int code = XA_OK;
  std::string why;
};

// xa_start with TMJOIN or TMRESUME; on XA_OK the branch is active again.
// mine: the connection's branch has this XID.
Verdict Rejoin(BranchState* state, bool mine, long flags, int rb_code);

// xa_start(TMNOFLAGS) on a connection that already has a branch.
Verdict AlreadyHasBranch(BranchState state, bool same_xid, const XID& current);

// xa_end: checks the flags and the association, and carries out TMSUSPEND.
// On XA_OK *kind is TMSUCCESS, TMFAIL or TMSUSPEND (already done).
Verdict End(BranchState* state, bool mine, long flags, long* kind);

// Whether the thread is associated with the branch (active or suspended).
inline bool Associated(BranchState s) { return s == BranchState::kActive || s == BranchState::kSuspended; }

// The xa_recover cursor: TMSTARTRSCAN fills it, calls with TMNOFLAGS go on,
// TMENDRSCAN closes it.
class RecoverCursor {
 public:
  void Start(std::vector<XID> xids);
  bool open() const { return open_; }
  // Copies up to count XIDs into out and returns how many.
  int Take(XID* out, long count, long flags);

 private:
  bool open_ = false;
  std::vector<XID> xids_;
  size_t pos_ = 0;
};

}  // namespace xtm::rm
