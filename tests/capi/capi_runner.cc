// Runs the C API test (a C program) against a scratch PostgreSQL database
// and a temporary directory.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>

#include "support/pg_cluster.h"
#include "support/temp_dir.h"

namespace xtm::test {
namespace {

TEST(CApi, TheWholeApiFromC) {
  ScratchDb db;
  TempDir dir;
  const std::string cmd = std::string(XATM_CAPI_TEST) + " '" + db.conninfo() + "' '" + dir.path() + "'";
  int st = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(0, WEXITSTATUS(st));
}

}  // namespace
}  // namespace xtm::test
