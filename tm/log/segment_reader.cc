#include "log/segment_reader.h"

#include <cstring>

#include "util/coding.h"
#include "util/crc32c.h"

namespace xtm::log {
namespace {

enum class FrameCheck { kGood, kBad };

// Whether a complete, checksummed record of a known type starts at off.
FrameCheck CheckFrame(std::string_view b, uint64_t off, uint32_t* len, uint8_t* type) {
  if (b.size() - off < kRecordHeaderSize) return FrameCheck::kBad;
  const char* p = b.data() + off;
  *len = DecodeFixed32(p + 4);
  *type = static_cast<uint8_t>(p[8]);
  if (*len > kMaxPayload || !IsKnownType(*type)) return FrameCheck::kBad;
  if (b.size() - off - kRecordHeaderSize < *len) return FrameCheck::kBad;
  uint32_t expected = crc32c::Unmask(DecodeFixed32(p));
  uint32_t actual = crc32c::Value(p + 4, kRecordHeaderSize - 4 + *len);
  return expected == actual ? FrameCheck::kGood : FrameCheck::kBad;
}

}  // namespace

std::string SegmentHeader(uint64_t number) {
  std::string h(kMagic, sizeof kMagic);
  PutFixed32(&h, kFormatVersion);
  PutFixed32(&h, 0);  // flags
  PutFixed64(&h, number);
  PutFixed32(&h, crc32c::Mask(crc32c::Value(h.data(), h.size())));
  return h;
}

Status ScanSegment(const std::string& path, std::string_view b, SegmentScan* out) {
  *out = SegmentScan();
  if (b.size() < kSegmentHeaderSize || std::memcmp(b.data(), kMagic, sizeof kMagic) != 0) {
    return Status::Corruption(path + ": not an xatm decision log segment (bad header at offset 0)");
  }
  out->version = DecodeFixed32(b.data() + 8);
  if (out->version > kFormatVersion) {
    return Status::NotSupported(path + " was written in log format version " +
                                std::to_string(out->version) + ", but this xatm reads versions up to " +
                                std::to_string(kFormatVersion) +
                                ": open it with a newer xatm (the log was left untouched)");
  }
  uint32_t hcrc = crc32c::Unmask(DecodeFixed32(b.data() + 24));
  if (hcrc != crc32c::Value(b.data(), 24)) {
    return Status::Corruption(path + ": segment header checksum mismatch at offset 0");
  }
  out->number = DecodeFixed64(b.data() + 16);

  uint64_t off = kSegmentHeaderSize;
  while (off < b.size()) {
    uint32_t len = 0;
    uint8_t type = 0;
    if (CheckFrame(b, off, &len, &type) == FrameCheck::kGood) {
      out->records.push_back({off, static_cast<RecordType>(type),
                              b.substr(off + kRecordHeaderSize, len)});
      off += kRecordHeaderSize + len;
      continue;
    }
    // Segments are preallocated with zeros: zeros to the end of the file are
    // the clean end of the log.
    if (b.find_first_not_of('\0', off) == std::string_view::npos) break;
    // A bad record. Every write of the log opens with a BATCH record that
    // says up to where the segment was durable (a sync had completed) when
    // the write was made. A power loss can leave any part of the writes
    // made since the last completed sync on disk, and not others: good
    // records after the bad one are still a torn tail unless a later write
    // says the bad record had been synced, and then the log is damaged in
    // the middle. A segment without BATCH records before the bad one (begun
    // in format version 1) cannot tell: any good record after it is damage.
    bool marked = out->version >= 2;
    for (const SegmentRecord& r : out->records) marked = marked || r.type == RecordType::kBatch;
    for (uint64_t p = off + 1; p + kRecordHeaderSize <= b.size(); ++p) {
      if (CheckFrame(b, p, &len, &type) != FrameCheck::kGood) continue;
      const bool synced_over = static_cast<RecordType>(type) == RecordType::kBatch && len == 8 &&
                               DecodeFixed64(b.data() + p + kRecordHeaderSize) > off;
      if (!marked || synced_over) {
        return Status::Corruption(path + ": bad record at offset " + std::to_string(off) +
                                  " followed by a valid record at offset " + std::to_string(p) +
                                  (marked ? " written after the bad one was synced" : "") +
                                  "; the log is damaged in the middle and was left untouched");
      }
      p += kRecordHeaderSize + len - 1;  // a record of an unsynced write: look past it
    }
    out->torn = true;
    break;
  }
  out->valid_end = off;
  return Status::OK();
}

}  // namespace xtm::log
