#include "pgsql/gid.h"

#include <charconv>

#include "common/xid_util.h"

namespace xtm::pgsql {

std::string XidToGid(const XID& xid) {
  const std::string_view g = rm::Gtrid(xid), b = rm::Bqual(xid);
  std::string out;
  out.reserve(12 + (g.size() + 2) / 3 * 4 + (b.size() + 2) / 3 * 4);
  out += std::to_string(xid.formatID);
  out += '_';
  rm::Base64Append(g, &out);
  out += '_';
  rm::Base64Append(b, &out);
  return out;
}

bool GidToXid(std::string_view gid, XID* xid) {
  size_t a = gid.find('_');
  if (a == std::string_view::npos) return false;
  size_t b = gid.find('_', a + 1);
  if (b == std::string_view::npos || gid.find('_', b + 1) != std::string_view::npos) return false;
  long format = 0;
  std::string_view f = gid.substr(0, a);
  auto [p, ec] = std::from_chars(f.data(), f.data() + f.size(), format);
  if (ec != std::errc() || p != f.data() + f.size() || f.empty()) return false;
  std::string gtrid, bqual;
  if (!rm::Base64Decode(gid.substr(a + 1, b - a - 1), &gtrid) ||
      !rm::Base64Decode(gid.substr(b + 1), &bqual)) {
    return false;
  }
  if (format == -1) return false;
  return rm::MakeXid(format, gtrid, bqual, xid);
}

}  // namespace xtm::pgsql
