#include "log/decision_log.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "log/segment_reader.h"
#include "util/coding.h"
#include "util/crash_point.h"
#include "util/file_util.h"

namespace xtm::log {
namespace {

constexpr char kSegmentPrefix[] = "segment-";
constexpr char kSegmentSuffix[] = ".xlog";

std::string SegmentName(uint64_t number) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%012llu%s", kSegmentPrefix,
                static_cast<unsigned long long>(number), kSegmentSuffix);
  return buf;
}

// The segment number in a file name, or 0 if the name is not a segment's.
uint64_t ParseSegmentName(const std::string& name) {
  const size_t pre = sizeof kSegmentPrefix - 1, suf = sizeof kSegmentSuffix - 1;
  if (name.size() != pre + 12 + suf || name.compare(0, pre, kSegmentPrefix) != 0 ||
      name.compare(pre + 12, suf, kSegmentSuffix) != 0) {
    return 0;
  }
  uint64_t n = 0;
  for (size_t i = pre; i < pre + 12; ++i) {
    if (name[i] < '0' || name[i] > '9') return 0;
    n = n * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  return n;
}

Status ListSegments(const std::string& dir, std::vector<uint64_t>* numbers,
                    std::vector<std::string>* temps) {
  std::vector<std::string> names;
  Status s = file::ListDir(dir, &names);
  if (!s.ok()) return s;
  numbers->clear();
  for (const std::string& n : names) {
    if (uint64_t num = ParseSegmentName(n)) numbers->push_back(num);
    else if (temps && n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0) temps->push_back(n);
  }
  std::sort(numbers->begin(), numbers->end());
  return Status::OK();
}

Status CheckDir(const std::string& dir) {
  if (dir.empty()) {
    return Status::InvalidArgument("log_dir is not set: name the directory for the decision log");
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return Status::InvalidArgument(
          "log_dir " + dir +
          " does not exist: create it (mkdir -p " + dir +
          "). xatm never creates it itself, so that a mistyped path cannot hide the decisions "
          "of an existing log");
    }
    return Status::FromErrno("stat log_dir " + dir, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("log_dir " + dir + " is not a directory");
  }
  return Status::OK();
}

// Appends the BATCH record that opens a write: where the segment was durable
// up to when the write was made (see log_format.md).
void AppendBatchRecord(uint64_t synced_upto, std::string* out) {
  std::string payload;
  PutFixed64(&payload, synced_upto);
  AppendFrameTo(RecordType::kBatch, payload, out);
}

std::string RandomNodeId() {
  std::string id(8, '\0');
  size_t got = 0;
  while (got < id.size()) {
    ssize_t n = ::getrandom(&id[got], id.size() - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
    else if (errno != EINTR) break;
  }
  if (got < id.size()) {  // getrandom unavailable: fall back on time and pid
    uint64_t v = NowMs() ^ (static_cast<uint64_t>(::getpid()) << 40);
    std::memcpy(&id[0], &v, 8);
  }
  return id;
}

}  // namespace

// ---------------------------------------------------------------------------
// LiveState

namespace {

// The keys of a payload, without decoding the rest: views into it.
bool ParseKey(RecordType type, std::string_view payload, std::string_view* gtrid, std::string_view* rm,
              std::string_view* bqual) {
  Decoder d(payload);
  uint32_t fid;
  constexpr uint32_t kMax = 4096;
  switch (type) {
    case RecordType::kCommit: return d.GetFixed32(&fid) && d.GetBytes(gtrid, kMax);
    case RecordType::kEnd: return d.GetBytes(gtrid, kMax);
    case RecordType::kHeuristic:
      return d.GetFixed32(&fid) && d.GetBytes(gtrid, kMax) && d.GetBytes(rm, kMax) &&
             d.GetBytes(bqual, kMax);
    case RecordType::kForget:
      return d.GetBytes(gtrid, kMax) && d.GetBytes(rm, kMax) && d.GetBytes(bqual, kMax);
    case RecordType::kNode:
    case RecordType::kBatch: return true;
  }
  return false;
}

Status Validate(RecordType type, std::string_view payload) {
  switch (type) {
    case RecordType::kNode: { NodeRecord r; return Decode(payload, &r); }
    case RecordType::kCommit: { CommitRecord r; return Decode(payload, &r); }
    case RecordType::kEnd: { EndRecord r; return Decode(payload, &r); }
    case RecordType::kHeuristic: { HeuristicRecord r; return Decode(payload, &r); }
    case RecordType::kForget: { ForgetRecord r; return Decode(payload, &r); }
    case RecordType::kBatch:
      return payload.size() == 8 ? Status::OK() : Status::Corruption("malformed BATCH record payload");
  }
  return Status::Corruption("unknown record type");
}

}  // namespace

Status LiveState::Apply(RecordType type, std::string_view payload, bool validate) {
  if (validate) {
    Status s = Validate(type, payload);
    if (!s.ok()) return s;
  }
  std::string_view gtrid, rm, bqual;
  if (!ParseKey(type, payload, &gtrid, &rm, &bqual)) {
    return Status::Corruption(std::string("malformed ") + RecordTypeName(type) + " record payload");
  }
  switch (type) {
    case RecordType::kNode: node_.assign(payload); break;
    case RecordType::kCommit: {
      auto it = commits_.find(gtrid);
      if (it == commits_.end()) it = commits_.emplace(std::string(gtrid), std::string()).first;
      it->second.assign(payload);
      break;
    }
    case RecordType::kEnd:
      if (auto it = commits_.find(gtrid); it != commits_.end()) commits_.erase(it);
      break;
    case RecordType::kHeuristic:
      heuristics_[std::make_tuple(std::string(gtrid), std::string(rm), std::string(bqual))].assign(payload);
      break;
    case RecordType::kForget:
      for (auto it = heuristics_.lower_bound(std::make_tuple(std::string(gtrid), std::string(), std::string()));
           it != heuristics_.end() && std::get<0>(it->first) == gtrid;) {
        bool match = rm.empty() || (std::get<1>(it->first) == rm && std::get<2>(it->first) == bqual);
        it = match ? heuristics_.erase(it) : std::next(it);
      }
      break;
    case RecordType::kBatch: break;  // framing only
  }
  return Status::OK();
}

LogState LiveState::Decoded() const {
  LogState st;
  if (!node_.empty()) st.has_node = Decode(node_, &st.node).ok();
  for (const auto& [gtrid, payload] : commits_) {
    CommitRecord c;
    if (Decode(payload, &c).ok()) st.open_commits[gtrid] = std::move(c);
  }
  for (const auto& [key, payload] : heuristics_) {
    HeuristicRecord h;
    if (Decode(payload, &h).ok()) st.heuristics[key] = std::move(h);
  }
  return st;
}

void LiveState::AppendSnapshot(std::string* out) const {
  if (!node_.empty()) AppendFrameTo(RecordType::kNode, node_, out);
  for (const auto& [gtrid, payload] : commits_) AppendFrameTo(RecordType::kCommit, payload, out);
  for (const auto& [key, payload] : heuristics_) AppendFrameTo(RecordType::kHeuristic, payload, out);
}

// ---------------------------------------------------------------------------
// Opening and replay

// A new segment's bytes, zero-filled to hold segment_bytes of records after
// base. Appends then overwrite blocks that are already allocated, so an
// fdatasync flushes data only, not the file's size and extent metadata; and a
// full disk shows itself when a segment is created, not in the middle of one.
uint64_t DecisionLog::PreallocatedSize(uint64_t base) const { return base + opts_.segment_bytes; }

std::string DecisionLog::SegmentPath(uint64_t number) const {
  return opts_.dir + "/" + SegmentName(number);
}

Status DecisionLog::Open(const LogOptions& opts, std::unique_ptr<DecisionLog>* out) {
  out->reset();
  Status s = CheckDir(opts.dir);
  if (!s.ok()) return s;
  std::unique_ptr<DecisionLog> log(new DecisionLog(opts));
  s = log->lock_.Acquire(opts.dir, !opts.read_only);
  if (!s.ok() && !(opts.read_only && opts.force && s.IsBusy())) return s;
  s = log->Replay();
  if (!s.ok()) return s;
  if (!opts.read_only) {
    s = log->OpenNewest();
    if (!s.ok()) return s;
    const LogState st = log->live_.Decoded();
    NodeRecord node = st.has_node ? st.node : NodeRecord{};
    if (!st.has_node) node.node_id = RandomNodeId();
    node.node_name = opts.node_name;
    node.incarnation += 1;
    node.time_ms = NowMs();
    s = log->Append(node);
    if (!s.ok()) return s;
  }
  log->node_ = log->live_.Decoded().node;
  *out = std::move(log);
  return Status::OK();
}

Status DecisionLog::Replay() {
  std::vector<std::string> temps;
  Status s = ListSegments(opts_.dir, &segments_, &temps);
  if (!s.ok()) return s;
  if (!opts_.read_only) {
    // A segment that was being created when the process died: never renamed
    // into place, so it holds nothing the log depends on.
    for (const std::string& t : temps) ::unlink((opts_.dir + "/" + t).c_str());
  }
  std::string bytes;
  for (size_t i = 0; i < segments_.size(); ++i) {
    const std::string path = SegmentPath(segments_[i]);
    s = file::ReadAll(path, &bytes);
    if (!s.ok()) return s;
    SegmentScan scan;
    s = ScanSegment(path, bytes, &scan);
    if (!s.ok()) return s;
    const bool newest = i + 1 == segments_.size();
    if (scan.torn && !newest) {
      return Status::Corruption(path + ": incomplete record at offset " +
                                std::to_string(scan.valid_end) +
                                " in a segment that is not the newest; the log was left untouched");
    }
    for (const SegmentRecord& r : scan.records) {
      s = live_.Apply(r.type, r.payload, /*validate=*/true);
      if (!s.ok()) {
        return Status::Corruption(path + ": offset " + std::to_string(r.offset) + ": " +
                                  s.message());
      }
    }
    if (newest) {
      size_ = scan.valid_end;
      base_size_ = kSegmentHeaderSize;
    }
    if (scan.torn) {
      std::string w = path + ": torn tail at offset " + std::to_string(scan.valid_end) + " (" +
                      std::to_string(bytes.size() - scan.valid_end) +
                      " bytes of an incomplete last record)";
      if (!opts_.read_only) {
        if (::truncate(path.c_str(), static_cast<off_t>(scan.valid_end)) != 0) {
          return Status::FromErrno("truncate torn tail of " + path, errno);
        }
        w += " truncated";
      } else {
        w += " skipped";
      }
      warnings_.push_back(std::move(w));
    }
  }
  return Status::OK();
}

// Opens the newest segment for appending, creating the first one if the log
// is new.
Status DecisionLog::OpenNewest() {
  if (segments_.empty()) {
    std::string header = SegmentHeader(1);
    Status s = file::ReplaceFile(opts_.dir, SegmentName(1), header, PreallocatedSize(header.size()));
    if (!s.ok()) return s;
    segments_.push_back(1);
    size_ = base_size_ = header.size();
    ++stats_.segments_created;
  }
  const std::string path = SegmentPath(segments_.back());
  fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd_ < 0) return Status::FromErrno("open " + path, errno);
  fd_path_ = path;
  // The truncation of a torn tail must be durable before anything is
  // appended after it.
  synced_end_ = size_;
  return opts_.sync ? file::DataSync(fd_, path) : Status::OK();
}

DecisionLog::~DecisionLog() {
  if (fd_ >= 0) {
    std::unique_lock<std::mutex> l(mu_);
    if (!pending_.empty() && !leading_ && failed_.ok()) {
      leading_ = true;
      LeadLocked(l);
      HandOffLocked();
    }
    cv_.wait(l, [this] { return !leading_; });
    ::close(fd_);
  }
}

// ---------------------------------------------------------------------------
// Appending: group commit
//
// Every appender queues its frame in pending_. If no leader is writing, it
// becomes the leader: it takes everything queued, writes it with one write()
// and, if any record in it must be durable, one fdatasync, then wakes the
// appenders whose records were in the batch. Appenders that arrive while a
// leader is busy queue up and form the next batch, so under load one sync
// carries many decisions.

Status DecisionLog::Append(const CommitRecord& r) {
  return AppendFrame(Framed(r), true);
}
Status DecisionLog::Append(const HeuristicRecord& r) {
  return AppendFrame(Framed(r), true);
}
Status DecisionLog::Append(const ForgetRecord& r) {
  return AppendFrame(Framed(r), true);
}
Status DecisionLog::Append(const CommitRecord& r, const std::vector<EndRecord>& ends_before) {
  return AppendFrame(Framed(r), true, &ends_before);
}
Status DecisionLog::Append(const NodeRecord& r) {
  return AppendFrame(Framed(r), true);
}
Status DecisionLog::Append(const EndRecord& r) {
  return AppendFrame(Framed(r), false);
}

Status DecisionLog::Sync() {
  if (opts_.read_only) return Status::OK();
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [this] { return !leading_; });
  if (!failed_.ok()) return failed_;
  leading_ = true;
  if (!pending_.empty()) LeadLocked(l);
  Status s = failed_;
  if (s.ok() && opts_.sync) {
    l.unlock();
    s = file::DataSync(fd_, fd_path_);
    l.lock();
  }
  HandOffLocked();
  return s;
}

Status DecisionLog::AppendFrame(std::string frame, bool durable,
                                const std::vector<EndRecord>* ends_before) {
  if (opts_.read_only) return Status::InvalidArgument("the decision log was opened read-only");
  std::vector<Pending> ends;
  if (ends_before) {
    for (const EndRecord& e : *ends_before) {
      ends.push_back(Pending{Framed(e), nullptr});
    }
  }
  GroupWaiter w;
  std::unique_lock<std::mutex> l(mu_);
  if (!failed_.ok()) return failed_;
  for (Pending& e : ends) pending_.push_back(std::move(e));
  pending_.push_back(Pending{std::move(frame), durable ? &w : nullptr});
  if (!durable && leading_) return Status::OK();  // the busy leader writes it next
  Status answer;
  for (;;) {
    if (!leading_) {
      if (durable && w.Answered(&answer)) return answer;
      leading_ = true;
      LeadLocked(l);
      HandOffLocked();
      if (!durable) return failed_;
      continue;  // our record was in the batch: answered
    }
    l.unlock();
    if (w.Wait(&answer)) return answer;
    l.lock();
  }
}

// Gives up leadership and pokes the first appender still waiting for a
// sync, which leads the next batch unless another appender got there first.
// REQUIRES: mu_ held, leading_.
void DecisionLog::HandOffLocked() {
  leading_ = false;
  cv_.notify_all();
  for (Pending& p : pending_) {
    if (p.waiter) {
      p.waiter->Poke();  // not answered: it is still queued
      break;
    }
  }
}

// REQUIRES: mu_ held via lock, leading_ set by the caller.
void DecisionLog::LeadLocked(std::unique_lock<std::mutex>& lock) {
  while (!pending_.empty()) {
    std::vector<Pending> batch;
    batch.swap(spare_);
    batch.swap(pending_);  // pending_ keeps the spare's capacity
    bool sync = false;
    size_t bytes_len = 0;
    for (const Pending& p : batch) {
      sync = sync || p.waiter != nullptr;
      bytes_len += p.frame.size();
    }
    std::string& bytes = batch_bytes_;
    bytes.clear();
    bytes.reserve(kRecordHeaderSize + 8 + bytes_len);
    AppendBatchRecord(synced_end_, &bytes);
    for (const Pending& p : batch) bytes += p.frame;

    lock.unlock();
    Status s = WriteBatch(bytes, sync);
    // If we crash now, the batch is durable and none of its appenders knows.
    if (s.ok() && sync) XATM_CRASH_POINT("log.batch.after_sync");
    if (s.ok()) {
      std::lock_guard<std::mutex> sl(state_mu_);
      for (const Pending& p : batch) {
        Status as = live_.Apply(FrameType(p.frame), FramePayload(p.frame), /*validate=*/false);
        (void)as;  // our own encoding: it always parses
      }
    }
    lock.lock();

    if (s.ok()) {
      stats_.records += batch.size();
      stats_.batches += 1;
      stats_.syncs += sync ? 1 : 0;
      stats_.max_batch = std::max<uint64_t>(stats_.max_batch, batch.size());
    } else if (s.IsUnknownOutcome()) {
      failed_ = s;
    }
    // The appenders of this batch are answered without mu_, so that none of
    // them wakes only to wait for it; so are the queued ones once the log
    // has failed (nothing is queued after that).
    std::vector<Pending> refused;
    if (!failed_.ok()) refused.swap(pending_);
    const Status failed = failed_;
    lock.unlock();
    for (Pending& p : batch) {
      if (p.waiter) p.waiter->Answer(s);
    }
    for (Pending& p : refused) {
      if (p.waiter) p.waiter->Answer(failed);
    }
    lock.lock();
    batch.clear();
    if (batch.capacity() > spare_.capacity()) spare_.swap(batch);
    if (!failed.ok()) return;
    // Durable appenders waiting now wake up and one of them leads the next
    // batch; only unforced records left behind are written by us.
    bool any_durable = false;
    for (const Pending& p : pending_) any_durable = any_durable || p.waiter != nullptr;
    if (any_durable) return;
  }
}

// Called by the leader without mu_.
Status DecisionLog::WriteBatch(const std::string& bytes, bool sync) {
  if (size_ > base_size_ && size_ - base_size_ + bytes.size() > opts_.segment_bytes) {
    return Roll(bytes);
  }
  const std::string& path = fd_path_;
  Status s = file::PWriteAll(fd_, bytes, size_, path);
  if (s.ok() && sync && opts_.sync) s = file::DataSync(fd_, path);
  if (s.ok()) {
    size_ += bytes.size();
    if (sync) synced_end_ = size_;  // everything before is durable now
    return s;
  }
  // Take back whatever part of the batch reached the file, so that nothing
  // of a failed append can surface at the next open: zeros are the log's end.
  const std::string zeros(bytes.size(), '\0');
  if (file::PWriteAll(fd_, zeros, size_, path).ok() && ::fdatasync(fd_) == 0) {
    return Status::IOError(s.message() + "; the records were not logged");
  }
  return Status::UnknownOutcome(s.message() + "; the log could not take the records back (" +
                                std::strerror(errno) +
                                "), so whether they are durable is known only after reopening");
}

// Starts a new segment holding the live state and then bytes; once it is
// durable, deletes every older segment. Called by the leader without mu_.
Status DecisionLog::Roll(const std::string& bytes) {
  const uint64_t number = segments_.back() + 1;
  std::string contents = SegmentHeader(number);
  // The state is only changed by the leader, which is us.
  live_.AppendSnapshot(&contents);
  const uint64_t base = contents.size();
  contents += bytes;
  const uint64_t used = contents.size();
  // Zeros follow the records up to the segment's size, so that appends
  // never change the file's size (fdatasync then writes no metadata).
  Status s = file::ReplaceFile(opts_.dir, SegmentName(number), contents, PreallocatedSize(base));
  if (!s.ok()) return Status::IOError(s.message() + "; the records were not logged");
  // If we crash now, the new segment alone holds everything: the older ones
  // are redundant, and replaying them first changes nothing.
  const std::string path = SegmentPath(number);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::UnknownOutcome(
        Status::FromErrno("open " + path, errno).message() +
        "; the records are in the new segment but it cannot be appended to");
  }
  ::close(fd_);
  fd_ = fd;
  fd_path_ = path;
  std::vector<uint64_t> old;
  old.swap(segments_);
  segments_.push_back(number);
  size_ = used;
  synced_end_ = used;  // written whole and synced before it was renamed into place
  base_size_ = base;
  uint64_t deleted = 0;
  for (uint64_t n : old) {
    if (::unlink(SegmentPath(n).c_str()) == 0) ++deleted;
  }
  Status ds = file::SyncDir(opts_.dir);
  (void)ds;  // a deletion that is not durable only leaves a redundant segment
  std::lock_guard<std::mutex> l(mu_);
  stats_.segments_created += 1;
  stats_.segments_deleted += deleted;
  return Status::OK();
}

LogState DecisionLog::State() const {
  std::lock_guard<std::mutex> l(state_mu_);
  return live_.Decoded();
}

LogStats DecisionLog::Stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

std::vector<std::string> DecisionLog::SegmentFiles() const {
  std::vector<uint64_t> numbers;
  std::vector<std::string> names;
  if (ListSegments(opts_.dir, &numbers, nullptr).ok()) {
    for (uint64_t n : numbers) names.push_back(SegmentName(n));
  }
  return names;
}

// ---------------------------------------------------------------------------

Status ScanLog(const std::string& dir, LogScan* out) {
  *out = LogScan();
  Status s = CheckDir(dir);
  if (!s.ok()) return s;
  std::vector<uint64_t> numbers;
  s = ListSegments(dir, &numbers, nullptr);
  if (!s.ok()) return s;
  std::string bytes;
  for (size_t i = 0; i < numbers.size(); ++i) {
    const std::string name = SegmentName(numbers[i]);
    const std::string path = dir + "/" + name;
    s = file::ReadAll(path, &bytes);
    if (!s.ok()) return s;
    SegmentScan scan;
    s = ScanSegment(path, bytes, &scan);
    if (!s.ok()) return s;
    out->segments.push_back(name);
    if (scan.torn) {
      if (i + 1 != numbers.size()) {
        return Status::Corruption(path + ": incomplete record at offset " +
                                  std::to_string(scan.valid_end) +
                                  " in a segment that is not the newest");
      }
      out->torn_tail = true;
      out->torn_segment = name;
      out->torn_offset = scan.valid_end;
    }
    LiveState check;
    for (const SegmentRecord& r : scan.records) {
      s = check.Apply(r.type, r.payload, /*validate=*/true);
      if (!s.ok()) {
        return Status::Corruption(path + ": offset " + std::to_string(r.offset) + ": " +
                                  s.message());
      }
      if (r.type != RecordType::kBatch) out->records.push_back({name, r.offset, r.type, std::string(r.payload)});
    }
  }
  return Status::OK();
}

}  // namespace xtm::log
