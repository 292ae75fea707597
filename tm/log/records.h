// The typed records of the decision log and their payload encoding.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "log/log_format.h"
#include "util/status.h"

namespace xtm::log {

// NODE: written (forced) each time a TM opens the log for writing. The first
// one creates the node id; each later one carries the next incarnation.
struct NodeRecord {
  std::string node_id;    // 8 random bytes, fixed for the life of the log
  std::string node_name;  // the configured [tm] node_name, for people
  uint32_t incarnation = 0;
  uint64_t time_ms = 0;   // wall clock, ms since the epoch
};

// One branch the TM must finish: the RM's configured name and the branch
// qualifier the TM gave it.
struct BranchRef {
  std::string rm;
  std::string bqual;
  bool operator==(const BranchRef&) const = default;
};

// COMMIT: the commit point. Once durable, every branch listed must commit.
struct CommitRecord {
  int32_t format_id = 0;
  std::string gtrid;
  uint64_t time_ms = 0;
  std::vector<BranchRef> branches;
};

// END: every branch of gtrid is finished; the COMMIT needs no more work.
struct EndRecord {
  std::string gtrid;
};

// How a branch ended, when it was not by the protocol.
enum class HeuristicOutcome : uint8_t {
  kCommitted = 1,   // XA_HEURCOM / committed by hand
  kRolledBack = 2,  // XA_HEURRB / rolled back by hand
  kMixed = 3,       // XA_HEURMIX
  kHazard = 4,      // XA_HEURHAZ
};
const char* HeuristicOutcomeName(HeuristicOutcome o);

// HEURISTIC: an outcome reached outside the protocol (reported by an RM, or
// decided by an administrator), kept until FORGET as an audit trail.
struct HeuristicRecord {
  int32_t format_id = 0;
  std::string gtrid;
  std::string rm;     // empty: every branch of gtrid
  std::string bqual;
  HeuristicOutcome outcome = HeuristicOutcome::kHazard;
  std::string who;    // operator login, or "xatm" when an RM reported it
  std::string why;
  uint64_t time_ms = 0;
};

// FORGET: the heuristic outcomes of gtrid (of one branch, or all if rm is
// empty) are dealt with.
struct ForgetRecord {
  std::string gtrid;
  std::string rm;
  std::string bqual;
};

// A record's payload, appended to *out.
void EncodeTo(const NodeRecord& r, std::string* out);
void EncodeTo(const CommitRecord& r, std::string* out);
void EncodeTo(const EndRecord& r, std::string* out);
void EncodeTo(const HeuristicRecord& r, std::string* out);
void EncodeTo(const ForgetRecord& r, std::string* out);

template <class Record>
std::string Encode(const Record& r) {
  std::string s;
  EncodeTo(r, &s);
  return s;
}

// Each Decode fails with Corruption when the payload does not parse exactly.
Status Decode(std::string_view payload, NodeRecord* r);
Status Decode(std::string_view payload, CommitRecord* r);
Status Decode(std::string_view payload, EndRecord* r);
Status Decode(std::string_view payload, HeuristicRecord* r);
Status Decode(std::string_view payload, ForgetRecord* r);

// Appends the frame of payload to *out: checksum, length, type, payload.
void AppendFrameTo(RecordType type, std::string_view payload, std::string* out);
// Fills in the header of *frame, which holds kRecordHeaderSize bytes and then
// the payload.
void SealFrame(RecordType type, std::string* frame);

// The type each record is framed with.
constexpr RecordType TypeOf(const NodeRecord&) { return RecordType::kNode; }
constexpr RecordType TypeOf(const CommitRecord&) { return RecordType::kCommit; }
constexpr RecordType TypeOf(const EndRecord&) { return RecordType::kEnd; }
constexpr RecordType TypeOf(const HeuristicRecord&) { return RecordType::kHeuristic; }
constexpr RecordType TypeOf(const ForgetRecord&) { return RecordType::kForget; }

// The frame of a record, encoded in place: one allocation for a record of a
// few branches.
template <class Record>
std::string Framed(const Record& r) {
  std::string f;
  f.reserve(kRecordHeaderSize + 128);
  f.resize(kRecordHeaderSize);
  EncodeTo(r, &f);
  SealFrame(TypeOf(r), &f);
  return f;
}
// The type and the payload of a frame (sealed: at least a header long).
inline RecordType FrameType(std::string_view frame) { return static_cast<RecordType>(frame[8]); }
inline std::string_view FramePayload(std::string_view frame) { return frame.substr(kRecordHeaderSize); }

// Milliseconds since the epoch, for the time fields.
uint64_t NowMs();

}  // namespace xtm::log
