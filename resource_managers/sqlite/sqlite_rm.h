// Internal interface of the SQLite resource manager, for the TM and tests.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <set>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/rm_extras.h"

namespace xtm::sqlite {

// What this RM offers the TM beside its switch (sqlite_extras.cc).
std::unique_ptr<rm::RmExtras> MakeExtras(const rm::RmParams& params);

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

// For a TM whose xids are new by construction (xatm's: node id, incarnation,
// sequence): xa_start on this thread's handle for rmid then skips the read of
// the sidecar that looks for a prepared branch with the xid. A duplicate that
// slipped through anyway cannot prepare (its sidecar record would collide:
// XA_RBOTHER) and leaves the prepared branch as it was. Callers of the switch
// that do not call this keep XAER_DUPID at xa_start. False if rmid is not
// open on this thread. Lasts until xa_close.
bool TrustFreshXids(int rmid);

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

// The random id the RM keeps in the database at path (xatm_meta), which
// tells two files apart; "" if it cannot be read (no such file, or the RM
// never opened it).
std::string DatabaseIdOf(const std::string& path);

// The gtrids of the decision rows in the SQLite database at path (only
// `only`, if given), read on a connection of its own. locked: under the
// database's write lock (BEGIN IMMEDIATE, waiting at most busy_timeout_ms):
// a last resource's branch holds that lock from xa_start until its COMMIT, so
// a read under it cannot miss a decision about to commit, as a plain read
// (the last committed snapshot) can. 0 when read (a database without the
// table has no rows); -1 when it cannot be known now (*why: the lock is busy,
// the file is missing, an I/O error...): never "no decision".
int ReadDecisionRows(const std::string& path, int busy_timeout_ms, bool locked, const std::string* only,
                     std::set<std::string>* out, std::string* why);

}  // namespace xtm::sqlite
