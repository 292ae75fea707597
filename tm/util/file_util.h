// Thin, error-checked wrappers over the POSIX file calls the log needs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace xtm::file {

// Writes all of data at the current offset, retrying short writes and EINTR.
Status WriteAll(int fd, std::string_view data, const std::string& path);
// Writes all of data at offset (pwrite), retrying short writes and EINTR.
Status PWriteAll(int fd, std::string_view data, uint64_t offset, const std::string& path);
// fdatasync(2), naming path in the error.
Status DataSync(int fd, const std::string& path);
// fsync(2) of a directory, so that a create, rename or unlink in it is durable.
Status SyncDir(const std::string& dir);
// Reads a whole file.
Status ReadAll(const std::string& path, std::string* out);
// Names (not paths) of the entries of dir, unsorted, without "." and "..".
Status ListDir(const std::string& dir, std::vector<std::string>* names);
// Writes path atomically: temp file, fsync, rename, fsync of the directory.
// zero_pad_to: the file is then filled with zero bytes up to this size
// (written in small pieces, never held in memory at once).
Status ReplaceFile(const std::string& dir, const std::string& name, std::string_view contents,
                   uint64_t zero_pad_to = 0);

}  // namespace xtm::file
