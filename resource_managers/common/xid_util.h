// XID helpers shared by the resource managers.
#pragma once

#include <string>
#include <string_view>

#include "xatm/xa.h"

namespace xtm::rm {

// A well-formed, non-null XID: formatID != -1, gtrid 1..64 bytes, bqual
// 0..64 bytes.
bool XidValid(const XID* xid);
bool XidEqual(const XID& a, const XID& b);
std::string_view Gtrid(const XID& x);
std::string_view Bqual(const XID& x);
// Builds an XID; false if the parts are too long.
bool MakeXid(long format_id, std::string_view gtrid, std::string_view bqual, XID* out);
// "formatID:gtrid-hex:bqual-hex", for messages.
std::string XidToString(const XID& x);

// Standard base64 (RFC 4648, with padding), appended to *out.
void Base64Append(std::string_view in, std::string* out);
// Strict: false on any character outside the alphabet or bad padding.
bool Base64Decode(std::string_view in, std::string* out);

// Lower-case hex, and back (false on an odd length or a non-hex digit).
std::string Hex(std::string_view bytes);
bool FromHex(std::string_view hex, std::string* out);

}  // namespace xtm::rm
