// The decision log's on-disk format. log_format.md beside this file is the
// grammar; this header is its code. Values here are frozen: changing one is a
// new format version.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xtm::log {

// Every segment file opens with this header (kSegmentHeaderSize bytes):
//   magic[8] "xatmlog\n" | version u32 | flags u32 | segment number u64 |
//   masked crc32c of the previous 24 bytes u32
inline constexpr char kMagic[8] = {'x', 'a', 't', 'm', 'l', 'o', 'g', '\n'};
inline constexpr uint32_t kFormatVersion = 2;  // 2: BATCH records (version 1 had none)
inline constexpr size_t kSegmentHeaderSize = 28;

// Every record is framed as
//   masked crc32c u32 | length u32 | type u8 | payload[length]
// and the checksum covers length, type and payload.
inline constexpr size_t kRecordHeaderSize = 9;
// No record is larger; a larger length field is damage, not data.
inline constexpr uint32_t kMaxPayload = 1u << 20;

enum class RecordType : uint8_t {
  // 0 is never written: a zero-filled tail is never mistaken for a record.
  kNode = 1,       // this log's node id and the incarnation of the TM that opened it
  kCommit = 2,     // the commit decision of a global transaction and the branches to finish
  kEnd = 3,        // every branch of a committed transaction is finished
  kHeuristic = 4,  // a heuristic outcome of one branch, with who decided it and why
  kForget = 5,     // an administrator has dealt with a heuristic outcome
  kBatch = 6,      // opens every write of the log: tells a torn last write from damage
};

inline bool IsKnownType(uint8_t t) { return t >= 1 && t <= 6; }
const char* RecordTypeName(RecordType t);

}  // namespace xtm::log
