// The XIDs xatm makes.
//
// formatID is kFormatId. The gtrid (20 bytes) names the TM instance and the
// moment: node id (8 bytes, from the decision log), incarnation (u32, bumped
// at every open of the log), sequence (u64 within the incarnation), all
// big-endian so that gtrids sort by time. The bqual names the branch: a
// version byte and the branch's index in its transaction (u16).
// A gtrid is shown to people in lowercase hex.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "xatm/xa.h"

namespace xtm::tm {

inline constexpr long kFormatId = 0x58544d31;  // "XTM1"
inline constexpr size_t kGtridSize = 20;

struct GtridParts {
  std::string node_id;  // 8 bytes
  uint32_t incarnation = 0;
  uint64_t sequence = 0;
};

std::string MakeGtrid(const std::string& node_id, uint32_t incarnation, uint64_t sequence);
// False for a gtrid in another form (another TM's).
bool ParseGtrid(std::string_view gtrid, GtridParts* out);
std::string MakeBqual(uint16_t branch);
XID MakeXid(std::string_view gtrid, std::string_view bqual);

std::string ToHex(std::string_view bytes);
// Lowercase or uppercase hex; false if malformed.
bool FromHex(std::string_view hex, std::string* out);

}  // namespace xtm::tm
