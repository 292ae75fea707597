// Internal interface of the SQLite resource manager, for the TM and tests.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace xtm::sqlite {

// The message of the last failed switch call on this thread for rmid ("" if
// none). After a successful xa_open it may hold a notice (e.g. that the
// database is not in WAL mode).
std::string LastError(int rmid);

// The sidecar file that holds prepared branches of database `path`.
std::string SidecarPath(const std::string& path);

// Rolls back, from any thread, the unprepared branch open on handle db (the
// TM's transaction timeout): its write lock is released at once, and the
// owning thread's next xa_end reports XA_RBTIMEOUT. Statements the
// application runs on the handle until then cannot commit. False if db has no
// unprepared branch.
bool AbortBranchOf(sqlite3* db);

// Whether the branch of rmid open on this thread (active or ended, not yet
// prepared) has written anything; true if it cannot tell. A branch that only
// read votes read-only: the TM settles it first.
bool BranchHasWrites(int rmid);

// Last-resource commit: inserts the decision row for gtrid into
// main.xatm_decision, and deletes the rows of `finished`, inside the active
// branch of rmid on this thread (statements prepared once per connection).
// "" or why not.
std::string WriteDecisionRow(int rmid, std::string_view gtrid, int64_t decided_at,
                             const std::vector<std::string>& finished);

}  // namespace xtm::sqlite
