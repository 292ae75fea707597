// --version of xatm and xatmd names the source commit, and --help of both
// explains every configuration key the configuration accepts: the lists of
// known keys come from the configuration's own "unknown key" messages.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "support/temp_dir.h"
#include "support/xatmd_process.h"
#include "xatm/xatm.h"

namespace xtm::test {
namespace {

// The keys in "... (known: a, b, c)" of msg.
std::vector<std::string> KnownKeys(const std::string& msg) {
  std::vector<std::string> keys;
  const size_t at = msg.find("(known: ");
  EXPECT_NE(std::string::npos, at) << msg;
  if (at == std::string::npos) return keys;
  std::stringstream list(msg.substr(at + 8, msg.find(')', at) - at - 8));
  for (std::string k; std::getline(list, k, ',');) {
    k.erase(0, k.find_first_not_of(' '));
    keys.push_back(k);
  }
  return keys;
}

std::string ConfigError(const std::string& text) {
  TempDir dir;
  const std::string path = dir / "x.conf";
  std::ofstream(path) << text;
  xatm* tm = nullptr;
  EXPECT_EQ(XATM_ECONFIG, xatm_open(path.c_str(), &tm));
  std::string m = xatm_errmsg(tm);
  xatm_close(tm);
  return m;
}

TEST(ProgramHelp, VersionNamesTheSourceCommit) {
  for (const std::string& program : {std::string(XATM_CLI), std::string(XATM_XATMD)}) {
    ShellResult r = RunShell(program + " --version");
    EXPECT_EQ(0, r.code) << r.out;
    EXPECT_TRUE(std::regex_search(r.out, std::regex(std::string("^xatmd? ") + xatm_version() +
                                                    " \\(commit ([0-9a-f]{12}(-dirty)?|unknown)\\)\n$")))
        << r.out;
  }
}

TEST(ProgramHelp, HelpExplainsEveryKeyTheConfigurationAccepts) {
  xatm_config* c = nullptr;
  ASSERT_EQ(XATM_OK, xatm_config_new(&c));
  EXPECT_EQ(XATM_ECONFIG, xatm_config_set(c, "no_such_key", "1"));
  std::vector<std::string> keys = KnownKeys(xatm_config_errmsg(c));
  EXPECT_EQ(XATM_ECONFIG, xatm_config_set(c, "server.no_such_key", "1"));
  for (const std::string& k : KnownKeys(xatm_config_errmsg(c))) keys.push_back(k);
  xatm_config_free(c);
  for (const char* type : {"postgresql", "sqlite", "mysql"}) {
    for (const std::string& k :
         KnownKeys(ConfigError(std::string("[tm]\nlog_dir = /tmp\n[rm.a]\ntype = ") + type + "\nno_such_key = 1\n"))) {
      keys.push_back(k);
    }
  }
  EXPECT_GT(keys.size(), 30u);
  for (const std::string& program : {std::string(XATM_CLI), std::string(XATM_XATMD)}) {
    ShellResult r = RunShell(program + " --help");
    EXPECT_EQ(0, r.code) << r.out;
    for (const std::string& k : keys) {
      EXPECT_TRUE(std::regex_search(r.out, std::regex("\n    ([a-z_]+, )*" + k + "(, [a-z_]+)* ")))
          << program << " --help does not explain \"" << k << "\"";
    }
  }
}

}  // namespace
}  // namespace xtm::test
