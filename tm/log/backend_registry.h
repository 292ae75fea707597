// BackendRegistry: the PostgreSQL backends the TM's incarnations (the
// embedded TM's, or xatmd's client sessions) ran branches on, kept beside the
// decision log (log_dir/BACKENDS) so that recovery of a dead incarnation can
// end exactly those backends and wait until they are gone before it trusts a
// scan of prepared branches (PITFALLS 10b). A backend is named by its pid and
// start time: application_name is the application's to change (PITFALLS 25).
//
// One line per backend: incarnation TAB rm TAB pid TAB backend_start NL.
// Added durably before a branch runs on the backend; a line cut by a crash
// (no newline) was never relied on and is skipped.
//
// Thread-safety: all methods may be called from any thread. REQUIRES: the
// caller owns the log directory (its LOCK).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "util/status.h"

namespace xtm::log {

struct BackendEntry {
  uint32_t incarnation = 0;
  std::string rm;     // the RM's configured name
  int pid = 0;
  std::string start;  // pg_stat_activity.backend_start, as text
};

class BackendRegistry {
 public:
  explicit BackendRegistry(std::string dir) : path_(dir + "/BACKENDS"), dir_(std::move(dir)) {}
  // Appends e; durable when it returns OK.
  Status Add(const BackendEntry& e);
  // Every entry (none if the file does not exist).
  Status Load(std::vector<BackendEntry>* out) const;
  // Keeps only the entries for which keep is true (the file is replaced
  // atomically). Entries added meanwhile are kept.
  Status Retain(const std::function<bool(const BackendEntry&)>& keep);

 private:
  const std::string path_, dir_;
  mutable std::mutex mu_;
};

}  // namespace xtm::log
