// A SQLite VFS that counts the syncs of chosen files: registered as the
// default, it wraps the one that was the default (unix) and forwards every
// call. For tests of what is durable when a COMMIT returns.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <string>

namespace xtm::test {

class SyncCountingVfs {
 public:
  // Counts xSync calls on files whose name ends with suffix (e.g.
  // "ledger.db-wal"). The default VFS until destroyed.
  explicit SyncCountingVfs(std::string suffix);
  ~SyncCountingVfs();
  SyncCountingVfs(const SyncCountingVfs&) = delete;
  SyncCountingVfs& operator=(const SyncCountingVfs&) = delete;
  int syncs() const { return syncs_.load(); }
  void Reset() { syncs_ = 0; }

  // For the wrapped files (sync_counting_vfs.cc).
  const std::string& suffix() const { return suffix_; }
  sqlite3_vfs* real() const { return real_; }
  std::atomic<int>& counter() { return syncs_; }

 private:
  std::string suffix_;
  sqlite3_vfs vfs_{};
  sqlite3_vfs* real_ = nullptr;
  std::atomic<int> syncs_{0};
};

}  // namespace xtm::test
