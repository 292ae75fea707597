// The example programs run against a real PostgreSQL and SQLite file and do
// what the README says they do.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "support/pg_cluster.h"

namespace xtm::test {
namespace {

// Runs a command, capturing stdout; returns its exit status.
int RunCommand(const std::string& cmd, std::string* out) {
  out->clear();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out->append(buf, n);
  int st = ::pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(Examples, PgsqlSwitchPreparesRecoversAndCommits) {
  ScratchDb db;
  std::string out;
  ASSERT_EQ(0, RunCommand(std::string(XATM_EXAMPLES_DIR) + "/pgsql_switch '" + db.conninfo() + "'", &out)) << out;
  EXPECT_NE(std::string::npos, out.find("xa_prepare")) << out;
  EXPECT_NE(std::string::npos, out.find("row 1: written in a branch")) << out;
}

}  // namespace
}  // namespace xtm::test
