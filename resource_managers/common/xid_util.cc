#include "common/xid_util.h"

#include <cstring>

namespace xtm::rm {

bool XidValid(const XID* x) {
  return x != nullptr && x->formatID != -1 && x->gtrid_length >= 1 &&
         x->gtrid_length <= MAXGTRIDSIZE && x->bqual_length >= 0 &&
         x->bqual_length <= MAXBQUALSIZE;
}

bool XidEqual(const XID& a, const XID& b) {
  return a.formatID == b.formatID && a.gtrid_length == b.gtrid_length &&
         a.bqual_length == b.bqual_length &&
         std::memcmp(a.data, b.data, static_cast<size_t>(a.gtrid_length + a.bqual_length)) == 0;
}

std::string_view Gtrid(const XID& x) {
  return std::string_view(x.data, static_cast<size_t>(x.gtrid_length));
}

std::string_view Bqual(const XID& x) {
  return std::string_view(x.data + x.gtrid_length, static_cast<size_t>(x.bqual_length));
}

bool MakeXid(long format_id, std::string_view gtrid, std::string_view bqual, XID* out) {
  if (gtrid.empty() || gtrid.size() > MAXGTRIDSIZE || bqual.size() > MAXBQUALSIZE) return false;
  std::memset(out, 0, sizeof *out);
  out->formatID = format_id;
  out->gtrid_length = static_cast<long>(gtrid.size());
  out->bqual_length = static_cast<long>(bqual.size());
  std::memcpy(out->data, gtrid.data(), gtrid.size());
  std::memcpy(out->data + gtrid.size(), bqual.data(), bqual.size());
  return true;
}

std::string Hex(std::string_view bytes) {
  static const char* d = "0123456789abcdef";
  std::string h;
  h.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    h += d[c >> 4];
    h += d[c & 15];
  }
  return h;
}

bool FromHex(std::string_view hex, std::string* out) {
  out->clear();
  if (hex.size() % 2 != 0) return false;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int a = val(hex[i]), b = val(hex[i + 1]);
    if (a < 0 || b < 0) return false;
    out->push_back(static_cast<char>(a * 16 + b));
  }
  return true;
}

std::string XidToString(const XID& x) {
  return std::to_string(x.formatID) + ":" + Hex(Gtrid(x)) + ":" + Hex(Bqual(x));
}

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
int Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

void Base64Append(std::string_view in, std::string* out_ptr) {
  std::string& out = *out_ptr;
  const size_t at = out.size();
  out.resize(at + (in.size() + 2) / 3 * 4);
  char* o = out.data() + at;
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3, o += 4) {
    const uint32_t v = uint32_t(p[i]) << 16 | uint32_t(p[i + 1]) << 8 | p[i + 2];
    o[0] = kAlphabet[v >> 18];
    o[1] = kAlphabet[(v >> 12) & 63];
    o[2] = kAlphabet[(v >> 6) & 63];
    o[3] = kAlphabet[v & 63];
  }
  if (i < in.size()) {
    const bool two = i + 2 == in.size();
    const uint32_t v = uint32_t(p[i]) << 16 | (two ? uint32_t(p[i + 1]) << 8 : 0);
    o[0] = kAlphabet[v >> 18];
    o[1] = kAlphabet[(v >> 12) & 63];
    o[2] = two ? kAlphabet[(v >> 6) & 63] : '=';
    o[3] = '=';
  }
}

bool Base64Decode(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 != 0) return false;
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    int a = Value(in[i]), b = Value(in[i + 1]);
    if (a < 0 || b < 0) return false;
    uint32_t v = uint32_t(a) << 18 | uint32_t(b) << 12;
    if (last && in[i + 2] == '=' && in[i + 3] == '=') {
      if (v & 0xffff) return false;
      out->push_back(static_cast<char>(v >> 16));
      return true;
    }
    int c = Value(in[i + 2]);
    if (c < 0) return false;
    v |= uint32_t(c) << 6;
    if (last && in[i + 3] == '=') {
      if (v & 0xff) return false;
      out->push_back(static_cast<char>(v >> 16));
      out->push_back(static_cast<char>((v >> 8) & 0xff));
      return true;
    }
    int d = Value(in[i + 3]);
    if (d < 0) return false;
    v |= uint32_t(d);
    out->push_back(static_cast<char>(v >> 16));
    out->push_back(static_cast<char>((v >> 8) & 0xff));
    out->push_back(static_cast<char>(v & 0xff));
  }
  return true;
}

}  // namespace xtm::rm
