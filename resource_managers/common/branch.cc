#include "common/branch.h"

#include "common/xid_util.h"

namespace xtm::rm {

Verdict Rejoin(BranchState* state, bool mine, long flags, int rb_code) {
  if (!mine || *state == BranchState::kPrepared) return {XAER_NOTA, "no such open branch on this connection"};
  if (*state == BranchState::kRollbackOnly) return {rb_code, "the branch is rollback-only"};
  if (flags & TMJOIN) {
    if (*state != BranchState::kIdle) return {XAER_PROTO, "TMJOIN needs an ended (idle) branch"};
  } else if (*state != BranchState::kSuspended) {
    return {XAER_PROTO, "TMRESUME needs a suspended branch"};
  }
  *state = BranchState::kActive;
  return {};
}

Verdict AlreadyHasBranch(BranchState state, bool same_xid, const XID& current) {
  if (same_xid) return {XAER_DUPID, "the branch already exists"};
  if (Associated(state)) {
    return {XAER_PROTO, "this thread is associated with branch " + XidToString(current) + "; end it first"};
  }
  return {XAER_RMERR, "a connection holds one branch at a time: finish branch " + XidToString(current) + " first"};
}

Verdict End(BranchState* state, bool mine, long flags, long* kind) {
  *kind = flags & (TMSUCCESS | TMFAIL | TMSUSPEND);
  if (*kind != TMSUCCESS && *kind != TMFAIL && *kind != TMSUSPEND) {
    return {XAER_INVAL, "xa_end needs exactly one of TMSUCCESS, TMFAIL, TMSUSPEND"};
  }
  if (flags & TMMIGRATE) return {XAER_INVAL, "association migration is not supported"};
  if (!mine) return {XAER_NOTA, "no such branch on this connection"};
  if (!Associated(*state)) return {XAER_PROTO, "the branch is not associated with this thread"};
  if (*kind == TMSUSPEND) {
    if (*state == BranchState::kSuspended) return {XAER_PROTO, "the branch is already suspended"};
    *state = BranchState::kSuspended;
  }
  return {};
}

void RecoverCursor::Start(std::vector<XID> xids) {
  xids_ = std::move(xids);
  pos_ = 0;
  open_ = true;
}

int RecoverCursor::Take(XID* out, long count, long flags) {
  long n = 0;
  while (n < count && pos_ < xids_.size()) out[n++] = xids_[pos_++];
  if (flags & TMENDRSCAN) {
    open_ = false;
    xids_.clear();
  }
  return static_cast<int>(n);
}

}  // namespace xtm::rm
