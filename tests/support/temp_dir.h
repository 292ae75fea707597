// A fresh directory under $TMPDIR for one test, removed with its contents.
#pragma once

#include <string>

namespace xtm::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Reads or writes a whole file; failures fail the test.
std::string ReadFileOrDie(const std::string& path);
void WriteFileOrDie(const std::string& path, const std::string& contents);
// Total bytes of the regular files directly in dir.
uint64_t DirBytes(const std::string& dir);

}  // namespace xtm::test
