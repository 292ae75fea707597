// PostgreSQL gids for XIDs, in pgjdbc's form:
//   formatID "_" base64(gtrid) "_" base64(bqual)
// at most 11 + 1 + 88 + 1 + 88 = 189 characters, within PostgreSQL's limit of
// 199, and only digits, '-', '_' and base64 characters: safe in a literal.
// Branches prepared by Java programs and by xatm are read alike.
#pragma once

#include <string>
#include <string_view>

#include "xatm/xa.h"

namespace xtm::pgsql {

std::string XidToGid(const XID& xid);
// false for a gid in another form (another TM's, or typed by hand).
bool GidToXid(std::string_view gid, XID* xid);

}  // namespace xtm::pgsql
