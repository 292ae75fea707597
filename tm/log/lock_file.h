// The LOCK file of a log directory: one writing process at a time.
#pragma once

#include <string>

#include "util/status.h"

namespace xtm::log {

class LockFile {
 public:
  LockFile() = default;
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;
  ~LockFile();

  // exclusive: the writer's lock (records our pid in the file). Otherwise a
  // shared lock, which any number of readers may hold while no writer does.
  // Busy names the holder's pid when another process has it.
  Status Acquire(const std::string& dir, bool exclusive);
  void Release();

 private:
  int fd_ = -1;
};

}  // namespace xtm::log
