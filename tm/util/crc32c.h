// CRC32C (Castagnoli), as used by the decision log's record framing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xtm::crc32c {

// The CRC32C of data[0..n), continuing from init_crc (the CRC of earlier data).
uint32_t Extend(uint32_t init_crc, const void* data, size_t n);
inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }

// A stored CRC is masked, so that the CRC of a string that itself contains
// CRCs stays well distributed (as LevelDB does).
constexpr uint32_t kMaskDelta = 0xa282ead8u;
inline uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }
inline uint32_t Unmask(uint32_t masked) {
  uint32_t rot = masked - kMaskDelta;
  return ((rot >> 17) | (rot << 15));
}

}  // namespace xtm::crc32c
