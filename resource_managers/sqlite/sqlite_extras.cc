// What the SQLite RM offers the TM beside its switch (common/rm_extras.h):
// read-only branches told apart before any vote, branches that live in their
// thread's connection, the transaction timeout, and decision rows in
// main.xatm_decision: the SQLite branch is the preferred last resource, its
// COMMIT running in this process.
#include <algorithm>
#include <chrono>

#include "common/rm_extras.h"
#include "common/xid_util.h"
#include "sqlite/sqlite_rm.h"
#include "xatm/rm_sqlite.h"

namespace xtm::sqlite {
namespace {

// How long a fenced read waits for the write lock of a transaction that may
// be committing a decision row before it leaves the transaction in doubt.
constexpr int kFenceWaitMs = 2000;

class SqliteExtras final : public rm::RmExtras {
 public:
  explicit SqliteExtras(const rm::RmParams& p) : p_(p) {}

  std::string XaInfo(const std::string& /*session_tag*/) const override {
    std::string info = "path=" + p_.path;
    if (p_.busy_timeout_ms >= 0) info += " busy_timeout_ms=" + std::to_string(p_.busy_timeout_ms);
    if (p_.read_only) info += " readonly=1";  // looking writes nothing
    return info;
  }
  std::string LastError(int rmid) const override { return sqlite::LastError(rmid); }
  void* Native(int rmid) const override { return xatm_sqlite_db(rmid); }
  void TrustFreshXids(int rmid) const override { sqlite::TrustFreshXids(rmid); }
  bool HasIdentity() const override { return true; }
  std::string Identity() const override { return DatabaseIdOf(p_.path); }

  bool BranchHasWrites(int rmid) const override { return sqlite::BranchHasWrites(rmid); }
  // A prepared branch is the open transaction of its thread's connection.
  bool FinishesOnAnyThread() const override { return false; }
  bool AbortFromAnotherThread(void* native) const override { return AbortBranchOf(static_cast<sqlite3*>(native)); }

  LastResource LastResourceKind() const override { return LastResource::kInProcess; }
  std::string EnableDecisionRows() override { return ""; }  // the RM creates its table with the first row
  bool CanDecide(void* native) const override { return native != nullptr; }
  std::string WriteDecisionRow(int rmid, const std::string& gtrid, const std::vector<std::string>& finished) override {
    const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
    return sqlite::WriteDecisionRow(rmid, gtrid, now_s, finished);
  }
  int ReadDecisionRows(std::set<std::string>* out, const std::string* only, std::string* why) override {
    return sqlite::ReadDecisionRows(p_.path, Busy(), /*locked=*/false, only, out, why);
  }
  // One read under the write lock per pass: every gtrid asked about was seen
  // prepared before it, so their last resources' transactions had begun.
  int FencedDecisionRow(const std::string& gtrid, rm::FencedRead* pass, std::string* why) override {
    if (!pass->done) {
      pass->done = true;
      std::set<std::string> all;
      if (sqlite::ReadDecisionRows(p_.path, std::min(kFenceWaitMs, Busy()), /*locked=*/true, nullptr, &all, why) == 0) {
        pass->rows = std::move(all);
      }
    }
    if (!pass->rows.has_value()) {
      if (why->empty()) *why = "the decision rows could not be read under the write lock of " + p_.path;
      return -1;
    }
    return pass->rows->count(gtrid) ? 1 : 0;
  }
  // Not on this thread's handle, which may hold an open branch.
  bool DeleteDecisionRows(const std::vector<std::string>& gtrids) override {
    if (gtrids.empty()) return true;
    std::string list;  // blob literals
    for (const std::string& g : gtrids) {
      if (!list.empty()) list += ", ";
      list += "x'";
      list += rm::Hex(g);
      list += '\'';
    }
    sqlite3* db = nullptr;
    bool ok = false;
    if (sqlite3_open_v2(p_.path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
      sqlite3_busy_timeout(db, Busy());
      ok = sqlite3_exec(db, ("DELETE FROM main.xatm_decision WHERE gtrid IN (" + list + ")").c_str(), nullptr,
                        nullptr, nullptr) == SQLITE_OK;
    }
    sqlite3_close(db);
    return ok;
  }

 private:
  int Busy() const { return p_.busy_timeout_ms >= 0 ? p_.busy_timeout_ms : 5000; }

  const rm::RmParams p_;
};

}  // namespace

std::unique_ptr<rm::RmExtras> MakeExtras(const rm::RmParams& params) {
  return std::make_unique<SqliteExtras>(params);
}

}  // namespace xtm::sqlite
