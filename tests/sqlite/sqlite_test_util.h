// Helpers for the SQLite resource manager tests.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>
#include <vector>

#include "common/xid_util.h"
#include "sqlite/sqlite_rm.h"
#include "xatm/rm_sqlite.h"

namespace xtm::test {

inline xa_switch_t& ssw() { return xatm_sqlite_switch; }

inline XID SqXid(const std::string& gtrid, const std::string& bqual = "b") {
  XID x;
  EXPECT_TRUE(rm::MakeXid(0x78617463, gtrid, bqual, &x));
  return x;
}

inline int SqOpen(int rmid, const std::string& info) {
  return ssw().xa_open_entry(const_cast<char*>(info.c_str()), rmid, TMNOFLAGS);
}
inline int SqClose(int rmid) { return ssw().xa_close_entry(const_cast<char*>(""), rmid, TMNOFLAGS); }
inline int SqStart(XID x, int rmid, long f = TMNOFLAGS) { return ssw().xa_start_entry(&x, rmid, f); }
inline int SqEnd(XID x, int rmid, long f = TMSUCCESS) { return ssw().xa_end_entry(&x, rmid, f); }
inline int SqPrepare(XID x, int rmid) { return ssw().xa_prepare_entry(&x, rmid, TMNOFLAGS); }
inline int SqCommit(XID x, int rmid, long f = TMNOFLAGS) { return ssw().xa_commit_entry(&x, rmid, f); }
inline int SqRollback(XID x, int rmid) { return ssw().xa_rollback_entry(&x, rmid, TMNOFLAGS); }
inline int SqForget(XID x, int rmid) { return ssw().xa_forget_entry(&x, rmid, TMNOFLAGS); }

inline std::vector<XID> SqRecoverAll(int rmid) {
  std::vector<XID> all(1000);
  int n = ssw().xa_recover_entry(all.data(), 1000, rmid, TMSTARTRSCAN | TMENDRSCAN);
  EXPECT_GE(n, 0) << xatm_sqlite_errmsg(rmid);
  all.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return all;
}

// A plain connection, outside the RM.
class Plain {
 public:
  explicit Plain(const std::string& path, int busy_ms = 0) {
    EXPECT_EQ(SQLITE_OK, sqlite3_open(path.c_str(), &db_));
    sqlite3_busy_timeout(db_, busy_ms);
  }
  ~Plain() { sqlite3_close_v2(db_); }
  sqlite3* db() const { return db_; }
  // Runs sql; returns the SQLite result code.
  int Run(const std::string& sql) { return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr); }
  // First column of the first row, or "" (NULL shows as "NULL").
  std::string One(const std::string& sql) { return OneOn(db_, sql); }
  static std::string OneOn(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    std::string v;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      v = t ? reinterpret_cast<const char*>(t) : "NULL";
    }
    sqlite3_finalize(st);
    return v;
  }

 private:
  sqlite3* db_ = nullptr;
};

// Every row of every user table (not the RM's xatm_ tables), as SQL
// literals, in key order: equal dumps mean equal databases.
inline std::string Dump(sqlite3* db) {
  std::vector<std::string> tables;
  {
    sqlite3_stmt* st;
    sqlite3_prepare_v2(db,
                       "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'xatm_%' "
                       "AND name NOT LIKE 'sqlite_%' ORDER BY name",
                       -1, &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW) tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
  }
  std::string out;
  for (const std::string& t : tables) {
    out += "== " + t + "\n";
    sqlite3_stmt* st;
    std::string sql = "SELECT * FROM \"" + t + "\" ORDER BY 1, 2";
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      sql = "SELECT * FROM \"" + t + "\" ORDER BY 1";
      sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    }
    // Quote every value through SQL's quote() for an exact text form.
    sqlite3_stmt* q;
    sqlite3_prepare_v2(db, "SELECT quote(?1)", -1, &q, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW) {
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        sqlite3_bind_value(q, 1, sqlite3_column_value(st, i));
        sqlite3_step(q);
        out += reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
        out += i + 1 < sqlite3_column_count(st) ? "|" : "\n";
        sqlite3_reset(q);
      }
    }
    sqlite3_finalize(q);
    sqlite3_finalize(st);
  }
  return out;
}

inline std::string DumpFile(const std::string& path) {
  Plain p(path);
  return Dump(p.db());
}

}  // namespace xtm::test
