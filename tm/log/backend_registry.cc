#include "log/backend_registry.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "util/file_util.h"

namespace xtm::log {
namespace {

std::string Line(const BackendEntry& e) {
  return std::to_string(e.incarnation) + "\t" + e.rm + "\t" + std::to_string(e.pid) + "\t" + e.start + "\n";
}

// REQUIRES: mu_ held.
Status LoadLocked(const std::string& path, std::vector<BackendEntry>* out) {
  out->clear();
  std::string text;
  if (::access(path.c_str(), F_OK) != 0) return Status::OK();
  if (Status s = file::ReadAll(path, &text); !s.ok()) return s;
  size_t at = 0;
  for (size_t nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) {
    std::istringstream line(text.substr(at, nl - at));
    BackendEntry e;
    std::string inc, pid;
    if (!std::getline(line, inc, '\t') || !std::getline(line, e.rm, '\t') || !std::getline(line, pid, '\t') ||
        !std::getline(line, e.start)) {
      continue;
    }
    e.incarnation = static_cast<uint32_t>(std::strtoul(inc.c_str(), nullptr, 10));
    e.pid = std::atoi(pid.c_str());
    if (e.pid > 0) out->push_back(std::move(e));
  }
  return Status::OK();
}

}  // namespace

Status BackendRegistry::Add(const BackendEntry& e) {
  std::lock_guard<std::mutex> l(mu_);
  const bool fresh = ::access(path_.c_str(), F_OK) != 0;
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("open " + path_, errno);
  const off_t before = ::lseek(fd, 0, SEEK_END);
  Status s = file::WriteAll(fd, Line(e), path_);
  if (s.ok()) s = file::DataSync(fd, path_);
  if (!s.ok() && before >= 0) (void)!::ftruncate(fd, before);  // no part of a line for the next one to follow
  ::close(fd);
  if (s.ok() && fresh) s = file::SyncDir(dir_);
  return s;
}

Status BackendRegistry::Load(std::vector<BackendEntry>* out) const {
  std::lock_guard<std::mutex> l(mu_);
  return LoadLocked(path_, out);
}

Status BackendRegistry::Retain(const std::function<bool(const BackendEntry&)>& keep) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<BackendEntry> all;
  if (Status s = LoadLocked(path_, &all); !s.ok()) return s;
  std::string text;
  size_t kept = 0;
  for (const BackendEntry& e : all) {
    if (!keep(e)) continue;
    text += Line(e);
    ++kept;
  }
  if (kept == all.size()) return Status::OK();
  return file::ReplaceFile(dir_, "BACKENDS", text);
}

}  // namespace xtm::log
