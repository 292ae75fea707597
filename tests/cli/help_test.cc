// --version of xatm and xatmd names the source commit, and --help of both
// explains every configuration key the configuration accepts: the lists of
// known keys come from the configuration's own "unknown key" messages.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
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

// "xatm 0.1.0 (commit 0123456789ab)\n", "-dirty" after the hash, or "unknown".
bool VersionLine(const std::string& out, const std::string& program) {
  const std::string head = program + " " + xatm_version() + " (commit ";
  if (out.rfind(head, 0) != 0 || out.size() < head.size() + 2 || out.substr(out.size() - 2) != ")\n") return false;
  std::string commit = out.substr(head.size(), out.size() - head.size() - 2);
  if (commit == "unknown") return true;
  if (commit.size() > 6 && commit.compare(commit.size() - 6, 6, "-dirty") == 0) commit.resize(commit.size() - 6);
  return commit.size() == 12 && commit.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// The keys a --help explains: the first column of its lines indented by four
// ("    host, port, socket      mysql: where the server is").
std::set<std::string> ExplainedKeys(const std::string& help) {
  std::set<std::string> keys;
  std::istringstream in(help);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("    ", 0) != 0 || line.size() < 5 || line[4] == ' ') continue;
    const std::string column = line.substr(4, line.find("  ", 4) - 4);
    std::stringstream list(column);
    for (std::string k; std::getline(list, k, ',');) keys.insert(k.substr(k.find_first_not_of(' ')));
  }
  return keys;
}

TEST(ProgramHelp, VersionNamesTheSourceCommit) {
  for (const std::string& program : {std::string("xatm"), std::string("xatmd")}) {
    ShellResult r = RunShell(std::string(program == "xatm" ? XATM_CLI : XATM_XATMD) + " --version");
    EXPECT_EQ(0, r.code) << r.out;
    EXPECT_TRUE(VersionLine(r.out, program)) << r.out;
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
    const std::set<std::string> explained = ExplainedKeys(r.out);
    for (const std::string& k : keys) {
      EXPECT_TRUE(explained.count(k)) << program << " --help does not explain \"" << k << "\"";
    }
  }
}

}  // namespace
}  // namespace xtm::test
