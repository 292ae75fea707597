#include "log/records.h"

#include <chrono>

#include "util/coding.h"
#include "util/crc32c.h"

namespace xtm::log {
namespace {

constexpr uint32_t kMaxField = 4096;  // rm names, gtrids, reasons: all far shorter

Status Bad(const char* what) {
  return Status::Corruption(std::string("malformed ") + what + " record payload");
}

}  // namespace

const char* RecordTypeName(RecordType t) {
  switch (t) {
    case RecordType::kNode: return "NODE";
    case RecordType::kCommit: return "COMMIT";
    case RecordType::kEnd: return "END";
    case RecordType::kHeuristic: return "HEURISTIC";
    case RecordType::kForget: return "FORGET";
    case RecordType::kBatch: return "BATCH";
  }
  return "UNKNOWN";
}

const char* HeuristicOutcomeName(HeuristicOutcome o) {
  switch (o) {
    case HeuristicOutcome::kCommitted: return "committed";
    case HeuristicOutcome::kRolledBack: return "rolled back";
    case HeuristicOutcome::kMixed: return "mixed";
    case HeuristicOutcome::kHazard: return "hazard";
  }
  return "unknown";
}

uint64_t NowMs() {
  using namespace std::chrono;
  return static_cast<uint64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

void EncodeTo(const NodeRecord& r, std::string* s) {
  PutBytes(s, r.node_id);
  PutBytes(s, r.node_name);
  PutFixed32(s, r.incarnation);
  PutFixed64(s, r.time_ms);
}

void EncodeTo(const CommitRecord& r, std::string* s) {
  PutFixed32(s, static_cast<uint32_t>(r.format_id));
  PutBytes(s, r.gtrid);
  PutFixed64(s, r.time_ms);
  PutFixed32(s, static_cast<uint32_t>(r.branches.size()));
  for (const BranchRef& b : r.branches) {
    PutBytes(s, b.rm);
    PutBytes(s, b.bqual);
  }
}

void EncodeTo(const EndRecord& r, std::string* s) { PutBytes(s, r.gtrid); }

void EncodeTo(const HeuristicRecord& r, std::string* s) {
  PutFixed32(s, static_cast<uint32_t>(r.format_id));
  PutBytes(s, r.gtrid);
  PutBytes(s, r.rm);
  PutBytes(s, r.bqual);
  s->push_back(static_cast<char>(r.outcome));
  PutBytes(s, r.who);
  PutBytes(s, r.why);
  PutFixed64(s, r.time_ms);
}

void EncodeTo(const ForgetRecord& r, std::string* s) {
  PutBytes(s, r.gtrid);
  PutBytes(s, r.rm);
  PutBytes(s, r.bqual);
}

Status Decode(std::string_view payload, NodeRecord* r) {
  Decoder d(payload);
  d.GetBytes(&r->node_id, kMaxField) && d.GetBytes(&r->node_name, kMaxField) &&
      d.GetFixed32(&r->incarnation) && d.GetFixed64(&r->time_ms);
  return d.done() ? Status::OK() : Bad("NODE");
}

Status Decode(std::string_view payload, CommitRecord* r) {
  Decoder d(payload);
  uint32_t fid = 0, n = 0;
  d.GetFixed32(&fid) && d.GetBytes(&r->gtrid, kMaxField) && d.GetFixed64(&r->time_ms) &&
      d.GetFixed32(&n);
  if (!d.ok() || n > 4096) return Bad("COMMIT");
  r->format_id = static_cast<int32_t>(fid);
  r->branches.resize(n);
  for (BranchRef& b : r->branches) d.GetBytes(&b.rm, kMaxField) && d.GetBytes(&b.bqual, kMaxField);
  return d.done() ? Status::OK() : Bad("COMMIT");
}

Status Decode(std::string_view payload, EndRecord* r) {
  Decoder d(payload);
  d.GetBytes(&r->gtrid, kMaxField);
  return d.done() ? Status::OK() : Bad("END");
}

Status Decode(std::string_view payload, HeuristicRecord* r) {
  Decoder d(payload);
  uint32_t fid = 0;
  uint8_t outcome = 0;
  d.GetFixed32(&fid) && d.GetBytes(&r->gtrid, kMaxField) && d.GetBytes(&r->rm, kMaxField) &&
      d.GetBytes(&r->bqual, kMaxField) && d.GetFixed8(&outcome) && d.GetBytes(&r->who, kMaxField) &&
      d.GetBytes(&r->why, kMaxField) && d.GetFixed64(&r->time_ms);
  if (!d.done() || outcome < 1 || outcome > 4) return Bad("HEURISTIC");
  r->format_id = static_cast<int32_t>(fid);
  r->outcome = static_cast<HeuristicOutcome>(outcome);
  return Status::OK();
}

Status Decode(std::string_view payload, ForgetRecord* r) {
  Decoder d(payload);
  d.GetBytes(&r->gtrid, kMaxField) && d.GetBytes(&r->rm, kMaxField) &&
      d.GetBytes(&r->bqual, kMaxField);
  return d.done() ? Status::OK() : Bad("FORGET");
}

namespace {

// Fills in the header of the frame at f, whose payload of len bytes follows it.
void FillHeader(char* f, RecordType type, size_t len) {
  EncodeFixed32(f + 4, static_cast<uint32_t>(len));
  f[8] = static_cast<char>(type);
  EncodeFixed32(f, crc32c::Mask(crc32c::Value(f + 4, kRecordHeaderSize - 4 + len)));
}

}  // namespace

void SealFrame(RecordType type, std::string* f) {
  FillHeader(f->data(), type, f->size() - kRecordHeaderSize);
}

void AppendFrameTo(RecordType type, std::string_view payload, std::string* out) {
  const size_t at = out->size();
  out->resize(at + kRecordHeaderSize);
  out->append(payload.data(), payload.size());
  FillHeader(out->data() + at, type, payload.size());
}

}  // namespace xtm::log
