// The static texts of the C API: version and return codes.
#include "xatm/xatm.h"

extern "C" {

const char* xatm_version(void) { return XATM_VERSION_STRING; }

const char* xatm_errstr(int rc) {
  switch (rc) {
    case XATM_OK: return "ok";
    case XATM_ERROR: return "internal error";
    case XATM_EINVAL: return "invalid argument or call out of sequence";
    case XATM_ECONFIG: return "invalid configuration";
    case XATM_ERM: return "resource manager failed or unreachable";
    case XATM_ELOG: return "decision log I/O error";
    case XATM_ECORRUPT: return "decision log is corrupt";
    case XATM_EBUSY: return "decision log is owned by another process";
    case XATM_EROLLEDBACK: return "transaction rolled back";
    case XATM_ETIMEDOUT: return "transaction rolled back after its timeout";
    case XATM_EHEURMIX: return "heuristic outcome: some branches committed, some rolled back";
    case XATM_EHEURHAZ: return "heuristic outcome: some branches may have completed heuristically";
    case XATM_EHEURRB: return "heuristic outcome: branches rolled back although commit was decided";
    case XATM_ENOTFOUND: return "no such transaction or resource manager";
    case XATM_EPENDING: return "committed; some branches are finished later by recovery";
    case XATM_EUNKNOWN: return "outcome unknown until recovery";
    case XATM_EFENCED: return "refused: the server already resolved this transaction";
    case XATM_ENOMEM: return "out of memory";
    default: return "unknown return code";
  }
}

}  // extern "C"
