#include "util/version.h"

#include "xatm_commit.h"  // generated at every build (cmake/git_commit.cmake)

namespace xtm {

const char* VersionWithCommit() { return XATM_VERSION_STRING " (commit " XATM_GIT_COMMIT ")"; }

}  // namespace xtm
