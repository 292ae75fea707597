#include "core/gtrid.h"

#include <cstring>

#include "common/xid_util.h"

namespace xtm::tm {

std::string MakeGtrid(const std::string& node_id, uint32_t incarnation, uint64_t sequence) {
  std::string g = node_id.substr(0, 8);
  g.resize(8, '\0');
  for (int i = 3; i >= 0; --i) g.push_back(static_cast<char>((incarnation >> (8 * i)) & 0xff));
  for (int i = 7; i >= 0; --i) g.push_back(static_cast<char>((sequence >> (8 * i)) & 0xff));
  return g;
}

bool ParseGtrid(std::string_view g, GtridParts* out) {
  if (g.size() != kGtridSize) return false;
  out->node_id.assign(g.data(), 8);
  out->incarnation = 0;
  for (int i = 8; i < 12; ++i) out->incarnation = (out->incarnation << 8) | static_cast<uint8_t>(g[i]);
  out->sequence = 0;
  for (int i = 12; i < 20; ++i) out->sequence = (out->sequence << 8) | static_cast<uint8_t>(g[i]);
  return true;
}

std::string MakeBqual(uint16_t branch) {
  std::string b(3, '\0');
  b[0] = 1;
  b[1] = static_cast<char>(branch >> 8);
  b[2] = static_cast<char>(branch & 0xff);
  return b;
}

XID MakeXid(std::string_view gtrid, std::string_view bqual) {
  XID x;
  std::memset(&x, 0, sizeof x);
  x.formatID = kFormatId;
  x.gtrid_length = static_cast<long>(gtrid.size());
  x.bqual_length = static_cast<long>(bqual.size());
  std::memcpy(x.data, gtrid.data(), gtrid.size());
  std::memcpy(x.data + gtrid.size(), bqual.data(), bqual.size());
  return x;
}

std::string ToHex(std::string_view bytes) { return rm::Hex(bytes); }

bool FromHex(std::string_view hex, std::string* out) { return rm::FromHex(hex, out); }

}  // namespace xtm::tm
