// Internal interface of the PostgreSQL resource manager, for the TM.
#pragma once

#include <string>

namespace xtm::pgsql {

// The message of the last failed switch call on this thread for rmid, with
// libpq's text where it had one ("" if none). Never contains a password.
std::string LastError(int rmid);

// conninfo (keyword=value or URI) with any password replaced by "***".
std::string RedactConninfo(const std::string& conninfo);

// How long an RM waits, after losing a connection during PREPARE or COMMIT,
// for PostgreSQL to accept a new one and for the old backend to be gone
// before it answers XAER_RMFAIL. Default 10 s.
void SetResolveTimeoutMs(int ms);

}  // namespace xtm::pgsql
