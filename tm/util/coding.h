// Little-endian fixed-width integers and length-prefixed strings: the byte
// encoding of every decision-log payload.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace xtm {

inline void PutFixed32(std::string* dst, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  dst->append(b, 4);
}
inline void PutFixed64(std::string* dst, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  dst->append(b, 8);
}
inline uint32_t DecodeFixed32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
inline uint64_t DecodeFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
inline void EncodeFixed32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
// A string as a 32-bit length followed by its bytes (any bytes, NULs included).
inline void PutBytes(std::string* dst, std::string_view s) {
  PutFixed32(dst, static_cast<uint32_t>(s.size()));
  dst->append(s.data(), s.size());
}

// Reads what the Put* functions wrote. Every Get* returns false (and leaves
// the reader failed) when the input is too short.
class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  bool GetFixed8(uint8_t* v) {
    if (in_.size() < 1) return Fail();
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool GetFixed32(uint32_t* v) {
    if (in_.size() < 4) return Fail();
    *v = DecodeFixed32(in_.data());
    in_.remove_prefix(4);
    return true;
  }
  bool GetFixed64(uint64_t* v) {
    if (in_.size() < 8) return Fail();
    *v = DecodeFixed64(in_.data());
    in_.remove_prefix(8);
    return true;
  }
  bool GetBytes(std::string* s, uint32_t max_len) {
    std::string_view v;
    if (!GetBytes(&v, max_len)) return false;
    s->assign(v);
    return true;
  }
  // As above, as a view into the input.
  bool GetBytes(std::string_view* s, uint32_t max_len) {
    uint32_t n;
    if (!GetFixed32(&n) || n > max_len || in_.size() < n) return Fail();
    *s = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && in_.empty(); }

 private:
  bool Fail() {
    ok_ = false;
    return false;
  }
  std::string_view in_;
  bool ok_ = true;
};

}  // namespace xtm
