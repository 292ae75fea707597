// Reading one segment file: its header, its records, and where it ends.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "log/log_format.h"
#include "util/status.h"

namespace xtm::log {

struct SegmentRecord {
  uint64_t offset = 0;  // of the frame, from the start of the file
  RecordType type = RecordType::kNode;
  std::string_view payload;  // points into the bytes given to ScanSegment
};

struct SegmentScan {
  uint64_t number = 0;   // from the header
  uint32_t version = 0;  // from the header
  std::vector<SegmentRecord> records;
  uint64_t valid_end = 0;  // just past the last good record
  bool torn = false;       // the bytes after valid_end are an incomplete tail
};

// Parses a segment. Zeros after the last record are its clean end (segments
// are preallocated). A bad record after which nothing valid follows, or only
// records of the same last write (no BATCH record opens a later one), is a
// torn tail (out->torn, OK); a bad record followed by a later write is
// Corruption naming path and offset. A newer format version is NotSupported.
Status ScanSegment(const std::string& path, std::string_view bytes, SegmentScan* out);

// The header of a new segment.
std::string SegmentHeader(uint64_t number);

}  // namespace xtm::log
