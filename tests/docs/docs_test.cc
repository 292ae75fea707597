// The documents say only what is true of this tree: every link leads to a
// file (and heading) that exists; every C and C++ block compiles against the
// public headers; every xatm / xatmd command line in a shell block uses
// commands and options the programs have; every script named exists.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "support/temp_dir.h"
#include "support/xatmd_process.h"

namespace xtm::test {
namespace {

namespace fs = std::filesystem;

const fs::path kRoot = XATM_SOURCE_DIR;

std::vector<fs::path> Documents() {
  std::vector<fs::path> out = {kRoot / "README.md", kRoot / "tm/README.md", kRoot / "resource_managers/README.md",
                               kRoot / "tm/log/log_format.md"};
  for (const auto& e : fs::directory_iterator(kRoot / "docs")) {
    if (e.path().extension() == ".md") out.push_back(e.path());
  }
  return out;
}

std::string Read(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to
// hyphens; a repeated heading gets -1, -2...
std::set<std::string> Anchors(const std::string& text) {
  std::set<std::string> out;
  std::map<std::string, int> seen;
  std::istringstream in(text);
  bool fenced = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("```", 0) == 0) fenced = !fenced;
    if (fenced || line.empty() || line[0] != '#') continue;
    size_t i = line.find_first_not_of('#');
    std::string h = line.substr(line.find_first_not_of(' ', i));
    std::string slug;
    for (size_t k = 0; k < h.size(); ++k) {
      const unsigned char c = static_cast<unsigned char>(h[k]);
      if (std::isalnum(c)) {
        slug += static_cast<char>(std::tolower(c));
      } else if (c == ' ' || c == '-') {
        slug += '-';
      } else if (c == '_') {
        slug += '_';
      } else if (c >= 0x80) {
        // UTF-8: punctuation (— – ’ “ ” × …) goes; letters stay.
        size_t len = (c >= 0xf0) ? 4 : (c >= 0xe0) ? 3 : 2;
        const std::string ch = h.substr(k, len);
        static const std::set<std::string> punct = {"—", "–", "’", "“", "”", "×", "…", "≥", "≤", "→", "·"};
        if (!punct.count(ch)) slug += ch;
        k += len - 1;
      }
    }
    const int n = seen[slug]++;
    out.insert(n == 0 ? slug : slug + "-" + std::to_string(n));
  }
  return out;
}

// Fenced blocks of a document: (info string, body).
std::vector<std::pair<std::string, std::string>> Blocks(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(text);
  std::string info, body;
  bool fenced = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("```", 0) == 0) {
      if (fenced) out.emplace_back(info, body);
      fenced = !fenced;
      info = line.substr(3);
      body.clear();
      continue;
    }
    if (fenced) body += line + "\n";
  }
  return out;
}

// The targets of the Markdown links [text](target) in text.
std::vector<std::string> LinkTargets(const std::string& text) {
  std::vector<std::string> out;
  for (size_t at = text.find("]("); at != std::string::npos; at = text.find("](", at + 2)) {
    const size_t end = text.find_first_of(") \n", at + 2);
    if (end != std::string::npos && text[end] == ')' && end > at + 2) out.push_back(text.substr(at + 2, end - at - 2));
  }
  return out;
}

// A function definition at the start of a line ("int f(...) {"): a whole
// program rather than statements.
bool DefinesAFunction(const std::string& code) {
  std::istringstream in(code);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || !(std::isalpha(static_cast<unsigned char>(line[0])) || line[0] == '_')) continue;
    const size_t paren = line.find('(');
    const size_t brace = line.find_last_not_of(' ');
    if (paren != std::string::npos && brace != std::string::npos && line[brace] == '{' &&
        line.find(';') == std::string::npos && line.find('=') == std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST(Docs, EveryLinkLeadsToAFileAndHeadingThatExist) {
  int checked = 0;
  for (const fs::path& doc : Documents()) {
    std::string text = Read(doc);
    // Not inside code blocks.
    std::string prose;
    bool fenced = false;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("```", 0) == 0) fenced = !fenced;
      if (!fenced) prose += line + "\n";
    }
    for (const std::string& target : LinkTargets(prose)) {
      if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0) continue;
      const size_t hash = target.find('#');
      const std::string file = target.substr(0, hash);
      const fs::path path = file.empty() ? doc : doc.parent_path() / file;
      ++checked;
      ASSERT_TRUE(fs::exists(path)) << doc << ": a link to " << target << ", which does not exist";
      if (hash != std::string::npos) {
        const std::string anchor = target.substr(hash + 1);
        EXPECT_TRUE(Anchors(Read(path)).count(anchor)) << doc << ": a link to " << target << ": no such heading";
      }
    }
  }
  EXPECT_GT(checked, 20);
}

// A C or C++ block compiles against the public headers: a whole program as
// it is; a fragment inside a function, its #include lines first.
TEST(Docs, EveryCAndCppBlockCompiles) {
  TempDir dir;
  int n = 0;
  const std::string flags = "-I" + (kRoot / "include").string() +
                            " $(pkg-config --cflags libpq sqlite3 libmariadb) -fsyntax-only -Wall -Werror "
                            "-Wno-unused-variable -Wno-unused-but-set-variable -Wno-unused-function";
  for (const fs::path& doc : Documents()) {
    for (const auto& [info, body] : Blocks(Read(doc))) {
      const bool cpp = info == "cpp";
      if (info != "c" && !cpp) continue;
      std::string includes = "#include <stdio.h>\n#include <libpq-fe.h>\n#include <sqlite3.h>\n#include <mysql.h>\n"
                             "#include <xatm/xatm.h>\n";
      std::string code;
      if (DefinesAFunction(body)) {
        code = includes + body;
      } else {
        std::string rest;
        std::istringstream in(body);
        for (std::string line; std::getline(in, line);) (line.rfind("#include", 0) == 0 ? includes : rest) += line + "\n";
        code = includes + (cpp ? "int main() {\n" : "int main(void) {\n") + rest + "return 0;\n}\n";
      }
      const std::string file = dir / ("block" + std::to_string(n++) + (cpp ? ".cc" : ".c"));
      WriteFileOrDie(file, code);
      ShellResult r = RunShell(std::string(cpp ? "c++ -std=c++17" : "cc -std=c99 -pedantic") + " " + flags + " " + file);
      EXPECT_EQ(0, r.code) << doc << ": a ```" << info << " block does not compile:\n" << code << "\n" << r.out;
    }
  }
  EXPECT_GE(n, 4);
}

// Command lines in shell blocks: xatm and xatmd with commands and options
// their --help lists; scripts that exist.
TEST(Docs, EveryCommandLineUsesWhatTheProgramsAndScriptsHave) {
  const std::string xatm_help = RunShell(std::string(XATM_CLI) + " --help").out;
  const std::string xatmd_help = RunShell(std::string(XATM_XATMD) + " --help").out;
  int checked = 0;
  for (const fs::path& doc : Documents()) {
    for (const auto& [info, body] : Blocks(Read(doc))) {
      if (info != "sh") continue;
      std::istringstream in(body);
      for (std::string line; std::getline(in, line);) {
        line = line.substr(0, line.find(" #"));
        std::istringstream words(line);
        std::vector<std::string> w;
        for (std::string x; words >> x;) w.push_back(x);
        if (w.empty()) continue;
        const std::string prog = fs::path(w[0]).filename();
        if (w[0].find("scripts/") != std::string::npos || w[0].find("bench/") != std::string::npos) {
          EXPECT_TRUE(fs::exists(kRoot / w[0])) << doc << ": " << line;
          ++checked;
          continue;
        }
        if (w.size() >= 2 && (w[0] == "bash" || w[0] == "sh") && w[1].find(".sh") != std::string::npos) {
          EXPECT_TRUE(fs::exists(kRoot / w[1])) << doc << ": " << line;
          ++checked;
          continue;
        }
        if (prog != "xatm" && prog != "xatmd") continue;
        const std::string& help = prog == "xatm" ? xatm_help : xatmd_help;
        bool command_seen = prog == "xatmd";
        for (size_t i = 1; i < w.size(); ++i) {
          const std::string& x = w[i];
          if (x.rfind("--", 0) == 0) {
            const std::string opt = x.substr(0, x.find('='));
            EXPECT_NE(std::string::npos, help.find(opt)) << doc << ": " << line << ": " << prog << " has no " << opt;
          } else if (x == "-c" || x == "--config" || x == "--server" || x == "--log-dir" || x == "--node") {
            ++i;  // its value
          } else if (!command_seen && x[0] != '-' && x.find('/') == std::string::npos) {
            command_seen = true;
            EXPECT_NE(std::string::npos, help.find("\n  " + x + " ")) << doc << ": " << line << ": no command " << x;
          }
        }
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 20);
}

}  // namespace
}  // namespace xtm::test
