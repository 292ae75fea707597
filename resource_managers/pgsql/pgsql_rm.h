// Internal interface of the PostgreSQL resource manager, for the TM.
#pragma once

#include <memory>
#include <string>

#include "common/rm_extras.h"

namespace xtm::pgsql {

// What this RM offers the TM beside its switch (pgsql_extras.cc).
std::unique_ptr<rm::RmExtras> MakeExtras(const rm::RmParams& params);

// The message of the last failed switch call on this thread for rmid, with
// libpq's text where it had one ("" if none). Never contains a password.
std::string LastError(int rmid);

// conninfo (keyword=value or URI) with any password replaced by "***".
std::string RedactConninfo(const std::string& conninfo);

// How long an RM waits, after losing a connection during PREPARE or COMMIT,
// for PostgreSQL to accept a new one and for the old backend to be gone
// before it answers XAER_RMFAIL. Default 10 s.
void SetResolveTimeoutMs(int ms);

// For a TM whose xids are new by construction (xatm's: node id, incarnation,
// sequence): xa_start on this thread's connection for rmid then sends BEGIN
// alone, without asking the server whether a prepared transaction already has
// the xid. A duplicate that slipped through anyway cannot prepare (PostgreSQL
// refuses the gid: XA_RBOTHER) and leaves the other transaction as it was.
// Callers of the switch that do not call this keep XAER_DUPID at xa_start.
// False if rmid is not open on this thread. Lasts until xa_close.
bool TrustFreshXids(int rmid);

// Runs sql (one statement or several) inside the active branch of rmid on
// this thread and, in the same round trip, reads the branch's transaction id:
// a one-phase commit of the branch then knows it without a query of its own
// (it tells the COMMIT's outcome if the connection is lost). "" or why not;
// a failed statement leaves PostgreSQL's transaction aborted, so the branch
// can only roll back.
std::string ExecInBranch(int rmid, const std::string& sql);

// The backend serving this thread's connection for rmid: its pid and
// pg_stat_activity.backend_start (as text), which identify it however the
// application sets application_name. False if rmid is not open here.
bool BackendOf(int rmid, int* pid, std::string* start);

}  // namespace xtm::pgsql
