// xatm-log-smoke LOG_DIR: opens (or creates the segments of) the decision log
// in LOG_DIR, records a committed and a still-open decision, and prints the
// log's records as they are on disk.
#include <cstdio>
#include <memory>
#include <string>

#include "log/decision_log.h"

namespace {

std::string Hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string h;
  for (unsigned char c : s) {
    h += digits[c >> 4];
    h += digits[c & 15];
  }
  return h;
}

int Run(const std::string& dir) {
  using namespace xtm::log;
  std::unique_ptr<DecisionLog> log;
  xtm::Status s = DecisionLog::Open({.dir = dir, .node_name = "demo"}, &log);
  if (!s.ok()) {
    std::fprintf(stderr, "xatm-log-smoke: %s\n", s.ToString().c_str());
    return 1;
  }
  for (const std::string& w : log->warnings()) std::printf("warning: %s\n", w.c_str());
  std::printf("opened decision log %s: node %s, incarnation %u\n", dir.c_str(),
              Hex(log->node().node_id).c_str(), log->node().incarnation);
  const std::string tag = std::to_string(log->node().incarnation);
  CommitRecord done{.format_id = 0x78617463, .gtrid = "smoke-done-" + tag, .time_ms = NowMs(),
                    .branches = {{"bank", "b1"}, {"ledger", "b2"}}};
  CommitRecord open{.format_id = 0x78617463, .gtrid = "smoke-open-" + tag, .time_ms = NowMs(),
                    .branches = {{"bank", "b1"}}};
  if (!(s = log->Append(done)).ok() || !(s = log->Append(EndRecord{done.gtrid})).ok() ||
      !(s = log->Append(open)).ok() || !(s = log->Sync()).ok()) {
    std::fprintf(stderr, "xatm-log-smoke: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("decided %s (COMMIT forced, END unforced) and %s (COMMIT forced, left open)\n",
              done.gtrid.c_str(), open.gtrid.c_str());
  log.reset();

  LogScan scan;
  if (!(s = ScanLog(dir, &scan)).ok()) {
    std::fprintf(stderr, "xatm-log-smoke: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("%-26s %8s  %-9s %s\n", "segment", "offset", "type", "gtrid / node");
  for (const LoggedRecord& r : scan.records) {
    std::string what;
    if (r.type == RecordType::kCommit) {
      CommitRecord c;
      (void)Decode(r.payload, &c);
      what = c.gtrid + " (" + std::to_string(c.branches.size()) + " branches)";
    } else if (r.type == RecordType::kEnd) {
      EndRecord e;
      (void)Decode(r.payload, &e);
      what = e.gtrid;
    } else if (r.type == RecordType::kNode) {
      NodeRecord n;
      (void)Decode(r.payload, &n);
      what = "incarnation " + std::to_string(n.incarnation);
    }
    std::printf("%-26s %8llu  %-9s %s\n", r.segment.c_str(),
                static_cast<unsigned long long>(r.offset), RecordTypeName(r.type), what.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: xatm-log-smoke LOG_DIR\n");
    return 2;
  }
  return Run(argv[1]);
}
