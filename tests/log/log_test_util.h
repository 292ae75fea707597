// Helpers shared by the decision-log tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "log/decision_log.h"

namespace xtm::test {

inline log::CommitRecord MakeCommit(const std::string& gtrid, int branches = 2) {
  log::CommitRecord c;
  c.format_id = 0x78617463;
  c.gtrid = gtrid;
  c.time_ms = log::NowMs();
  for (int i = 0; i < branches; ++i) {
    c.branches.push_back({"rm" + std::to_string(i), std::string("b\0q", 3) + std::to_string(i)});
  }
  return c;
}

inline std::unique_ptr<log::DecisionLog> OpenLogOrDie(const std::string& dir,
                                                      log::LogOptions opts = {}) {
  opts.dir = dir;
  std::unique_ptr<log::DecisionLog> l;
  Status s = log::DecisionLog::Open(opts, &l);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return l;
}

}  // namespace xtm::test
