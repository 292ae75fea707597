// Capture: the changes of one SQLite branch, recorded by SQLite's pre-update
// hook and written at prepare as a changeset in the session extension's
// format (what sqlite3changeset_apply replays).
//
// It does what a session object does, for one branch at a time and without
// the session's per-object setup: the first change to a row (by primary key)
// keeps the row as it was; at prepare each such row is read as it is now,
// and the pair becomes an INSERT, UPDATE or DELETE — or nothing, when the row
// ends as it began. The table layouts come from the RM's schema cache and the
// row reads are statements kept for reuse, so a branch costs no SQL
// compilation after the first one on a connection.
//
// As in the session extension: tables without a declared primary key, and
// rows whose key has a NULL, are not captured (the RM refuses both before a
// branch can prepare); changes made by triggers are marked indirect.
//
// Changeset format (sqlite3session.c): per table 'T', varint column count,
// one byte per column (1 for key columns), the NUL-terminated name; then per
// change the operation (SQLITE_INSERT/UPDATE/DELETE), the indirect flag, and
// records of typed values: 0 undefined, 1 integer (8 bytes big-endian),
// 2 real (8 bytes big-endian), 3 text and 4 blob (varint length, bytes),
// 5 NULL. INSERT carries the new row, DELETE the old row; UPDATE carries an
// old record with the key and changed columns (others undefined) and a new
// record with the changed columns only.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "sqlite/sqlite_util.h"

namespace xtm::sqlite {

class Capture {
 public:
  // Starts recording a new branch (forgetting the last one).
  void Begin();
  // Stops recording; what was recorded stays.
  void Stop() { on_ = false; }
  void Clear();
  bool on() const { return on_; }
  // True when no row was changed (a read-only branch).
  bool empty() const { return rows_ == 0; }
  // Tables of the main database the branch wrote to (captured or not).
  const std::set<std::string>& touched() const { return touched_; }
  // Why a change could not be captured (the branch must not prepare), or "".
  const std::string& problem() const { return problem_; }

  // The pre-update hook's work. t: the table's layout, or null if unknown.
  void OnPreUpdate(sqlite3* db, int op, const char* table, const TableInfo* t);

  // The branch's changeset, reading current rows on db through cache, and
  // for each change (in order) an 8-byte digest of the row's full pre-image
  // (0 for an INSERT: no row before) — what a replay checks the row against.
  // false (and why) if a row cannot be read.
  bool Changeset(sqlite3* db, StmtCache* cache, std::string* out, std::string* digests, std::string* why) const;

 private:
  struct Value {
    int type = SQLITE_NULL;
    int64_t i = 0;
    double d = 0;
    std::string s;  // text or blob
    bool operator==(const Value& o) const;
  };
  struct Row {
    std::vector<Value> key;  // the key columns' values, in column order
    bool existed = false;    // the row was there before the branch's first change
    bool indirect = false;   // that first change was made by a trigger
    std::vector<Value> old;  // every column, if existed
  };
  struct Table {
    std::string name;
    TableInfo info;
    std::unordered_map<std::string, size_t> index;  // encoded key -> rows
    std::vector<Row> rows;                          // in order of first change
  };

  static Value Copy(sqlite3_value* v);
  static void Put(std::string* out, const Value& v);
  // The row's key from values (old or new); false if a key value is NULL.
  static bool Key(const TableInfo& t, sqlite3* db, bool old_values, std::vector<Value>* key, std::string* encoded);
  void Note(Table* tab, sqlite3* db, bool existed, bool old_values);
  // In an UPDATE's hook: whether a key column's value changes (true if it
  // cannot tell, or a key value is NULL).
  static bool KeyChanged(const TableInfo& t, sqlite3* db);

  bool on_ = false;
  size_t rows_ = 0;
  std::vector<Table> tables_;                      // in order of first change
  std::unordered_map<std::string, size_t> by_name_;
  std::set<std::string> touched_;
  std::string problem_;
};

}  // namespace xtm::sqlite
