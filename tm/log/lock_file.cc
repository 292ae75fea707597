#include "log/lock_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace xtm::log {

LockFile::~LockFile() { Release(); }

void LockFile::Release() {
  if (fd_ >= 0) {
    ::close(fd_);  // drops the flock
    fd_ = -1;
  }
}

Status LockFile::Acquire(const std::string& dir, bool exclusive) {
  const std::string path = dir + "/LOCK";
  int fd = ::open(path.c_str(), (exclusive ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC, 0600);
  if (fd < 0 && !exclusive && errno == ENOENT) return Status::OK();  // no writer ever ran here
  if (fd < 0) {
    int e = errno;
    if (e == EACCES || e == EROFS) {
      return Status::InvalidArgument("log_dir " + dir + " is not writable (" + std::strerror(e) +
                                     " creating " + path +
                                     "): give the TM's user write access to it, or point log_dir "
                                     "at a writable directory");
    }
    return Status::FromErrno("open lock file " + path, e);
  }
  if (::flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    int e = errno;
    char buf[32] = {0};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (e != EWOULDBLOCK) return Status::FromErrno("lock " + path, e);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("?");
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return Status::Busy("the decision log in " + dir + " is in use by process " + pid +
                        " (lock file " + path +
                        "). Only one process may own a decision log: stop that process, or run "
                        "xatmd and let every application use it through [tm] server");
  }
  if (exclusive) {
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
      int e = errno;
      ::close(fd);
      return Status::FromErrno("write lock file " + path, e);
    }
  }
  fd_ = fd;
  return Status::OK();
}

}  // namespace xtm::log
