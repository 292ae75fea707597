// What --version of the programs prints: the release and the source commit.
#pragma once

namespace xtm {

// "0.1.0 (commit 0123456789ab)"; "-dirty" when built from changed sources.
const char* VersionWithCommit();

}  // namespace xtm
