// Internal interface of the SQLite resource manager, for the TM and tests.
#pragma once

#include <string>

namespace xatm::sqlite {

// The message of the last failed switch call on this thread for rmid ("" if
// none). After a successful xa_open it may hold a notice (e.g. that the
// database is not in WAL mode).
std::string LastError(int rmid);

// The sidecar file that holds prepared branches of database `path`.
std::string SidecarPath(const std::string& path);

}  // namespace xatm::sqlite
