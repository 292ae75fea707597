// DecisionLog: the durable record of the TM's commit decisions.
//
// A log directory holds numbered segment files and a LOCK file. Appends go to
// the newest segment; COMMIT, HEURISTIC and FORGET records are durable
// (fdatasync) before Append returns, END records ride along unforced.
// Concurrent appenders share one write and one fdatasync (group commit).
//
// The log stays small however long it runs: when the newest segment passes
// segment_bytes, the next batch goes into a new segment that begins with a
// snapshot of everything still live (the NODE record, every COMMIT without
// END, every HEURISTIC without FORGET); once that segment is durable, all
// older segments are deleted.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "log/lock_file.h"
#include "log/records.h"
#include "util/group_waiter.h"
#include "util/status.h"

namespace xtm::log {

struct LogOptions {
  std::string dir;          // must exist; never created here (see Open)
  std::string node_name;    // recorded in NODE records, for people
  uint64_t segment_bytes = 4u << 20;
  // Read-only: no NODE record, no truncation, a shared lock. With force, a
  // read-only open proceeds even while a writer holds the log (a torn tail is
  // then only skipped).
  bool read_only = false;
  bool force = false;
  // false skips fdatasync. Only for measuring space and CPU in tests and
  // benchmarks: a log opened so is not durable.
  bool sync = true;
};

// What is still live in a log: what recovery needs.
struct LogState {
  bool has_node = false;
  NodeRecord node;
  std::map<std::string, CommitRecord> open_commits;  // by gtrid: COMMIT without END
  // by (gtrid, rm, bqual): HEURISTIC without FORGET
  std::map<std::tuple<std::string, std::string, std::string>, HeuristicRecord> heuristics;
};

// The live records, kept as their encoded payloads: applying a record parses
// only its key, and a segment's snapshot re-frames the bytes as they are.
class LiveState {
 public:
  // Applies one record, as replay and appends both do. validate: decode the
  // whole payload (replay), not only its key (our own appends).
  Status Apply(RecordType type, std::string_view payload, bool validate);
  LogState Decoded() const;
  // Frames of every live record: NODE, open COMMITs, HEURISTICs.
  void AppendSnapshot(std::string* out) const;

 private:
  std::string node_;  // payload of the latest NODE, empty if none
  // Looked up by a view of a record's gtrid, without a string made for it.
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view k) const { return std::hash<std::string_view>()(k); }
  };
  std::unordered_map<std::string, std::string, Hash, std::equal_to<>> commits_;  // gtrid -> COMMIT payload
  std::map<std::tuple<std::string, std::string, std::string>, std::string> heuristics_;
};

struct LogStats {
  uint64_t records = 0;     // records appended since open
  uint64_t batches = 0;     // writes
  uint64_t syncs = 0;       // fdatasyncs
  uint64_t max_batch = 0;   // most records in one write
  uint64_t segments_created = 0;
  uint64_t segments_deleted = 0;
};

class DecisionLog {
 public:
  // Opens the log in opts.dir: takes the lock, replays every segment, cuts a
  // torn tail (with a warning in warnings()), and — unless read_only — appends
  // a NODE record with the next incarnation (a new node id for a new log).
  // A missing directory is an error: creating it silently could hide, behind a
  // mistyped path, the decisions an existing log holds.
  static Status Open(const LogOptions& opts, std::unique_ptr<DecisionLog>* out);

  DecisionLog(const DecisionLog&) = delete;
  DecisionLog& operator=(const DecisionLog&) = delete;
  ~DecisionLog();

  // Durable on OK. IOError: the record is definitely not in the log.
  // UnknownOutcome: it may or may not be; the log refuses further appends and
  // must be reopened (which settles it).
  Status Append(const CommitRecord& r);
  Status Append(const HeuristicRecord& r);
  Status Append(const ForgetRecord& r);
  Status Append(const NodeRecord& r);
  // Not forced: written with the next batch, or at once if no batch is in
  // progress. Lost ENDs are harmless (recovery finds nothing left to do).
  Status Append(const EndRecord& r);
  // ENDs (unforced) and a COMMIT (durable on OK) in one batch: xatmd appends
  // the ENDs a client sent ahead of its next decision so, with one write.
  Status Append(const CommitRecord& r, const std::vector<EndRecord>& ends_before);
  // Makes everything appended so far durable.
  Status Sync();

  const std::string& dir() const { return opts_.dir; }
  // The node id (8 bytes) and this opening's incarnation.
  const NodeRecord& node() const { return node_; }
  // A copy of the live state.
  LogState State() const;
  LogStats Stats() const;
  // Things the open noticed and repaired (a torn tail), for the TM's log.
  const std::vector<std::string>& warnings() const { return warnings_; }
  // Segment file names, oldest first.
  std::vector<std::string> SegmentFiles() const;

 private:
  struct Pending {
    std::string frame;
    GroupWaiter* waiter;  // null for unforced records
  };
  explicit DecisionLog(const LogOptions& opts) : opts_(opts) {}

  Status Replay();
  Status OpenNewest();
  Status AppendFrame(std::string frame, bool durable,
                     const std::vector<EndRecord>* ends_before = nullptr);
  void LeadLocked(std::unique_lock<std::mutex>& lock);
  void HandOffLocked();
  Status WriteBatch(const std::string& bytes, bool sync);
  Status Roll(const std::string& bytes);
  std::string SegmentPath(uint64_t number) const;
  // The size a segment is created with: its header and snapshot, then room.
  uint64_t PreallocatedSize(uint64_t base) const;

  const LogOptions opts_;
  LockFile lock_;
  std::vector<std::string> warnings_;
  NodeRecord node_;

  mutable std::mutex mu_;
  std::condition_variable cv_;    // leading_ became false (for Sync and close)
  mutable std::mutex state_mu_;
  LiveState live_;                // REQUIRES state_mu_ to change; changed only by the leader,
                                  // which reads it without the mutex
  std::vector<Pending> pending_;  // REQUIRES mu_
  // The leader's: an emptied batch vector kept for its capacity, and the
  // buffer a batch's bytes are gathered in.
  std::vector<Pending> spare_;  // REQUIRES mu_
  std::string batch_bytes_;
  bool leading_ = false;          // REQUIRES mu_: a leader is writing
  Status failed_;                 // REQUIRES mu_: once set, every append fails with it
  LogStats stats_;                // REQUIRES mu_

  // Owned by the leader (or by Open before any append).
  int fd_ = -1;
  std::vector<uint64_t> segments_;  // numbers, oldest first; the last is being written
  std::string fd_path_;             // the path of that last one (fd_), for messages
  uint64_t size_ = 0;               // bytes of records in the newest segment (zeros follow)
  uint64_t synced_end_ = 0;         // of the newest segment, what a completed sync made durable
  uint64_t base_size_ = 0;          // header and snapshot of the newest segment
};

// For `xatm log dump` and `xatm log verify`: every record of every segment in
// dir, in order (but the BATCH records that only frame writes), without
// opening the log for writing.
struct LoggedRecord {
  std::string segment;  // file name
  uint64_t offset = 0;
  RecordType type = RecordType::kNode;
  std::string payload;
};
struct LogScan {
  std::vector<LoggedRecord> records;
  std::vector<std::string> segments;
  bool torn_tail = false;  // the newest segment ends in an incomplete record
  std::string torn_segment;
  uint64_t torn_offset = 0;
};
Status ScanLog(const std::string& dir, LogScan* out);

}  // namespace xtm::log
