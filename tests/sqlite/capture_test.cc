// The SQLite RM's change capture against the session extension it replaces:
// the same random statements on two copies of a database, one recorded by a
// session object, the other by Capture; both changesets must hold the same
// changes and replay to the same database.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "sqlite/capture.h"
#include "sqlite/sqlite_util.h"

namespace xtm::sqlite {
namespace {

const char kSchema[] =
    "CREATE TABLE t1 (id INTEGER PRIMARY KEY, s TEXT, n REAL, bl BLOB);"
    "CREATE TABLE t2 (k1 TEXT NOT NULL, k2 INTEGER NOT NULL, v, PRIMARY KEY (k1, k2)) WITHOUT ROWID;"
    // The key's order differs from the columns' order.
    "CREATE TABLE t3 (a INTEGER NOT NULL, b TEXT NOT NULL, c, PRIMARY KEY (b, a));"
    "CREATE TABLE log (id INTEGER PRIMARY KEY, what TEXT);"
    "CREATE TRIGGER t1_log AFTER UPDATE ON t1 BEGIN INSERT INTO log (what) VALUES ('t1 ' || new.id); END;"
    "INSERT INTO t1 VALUES (1, 'one', 1.5, x'01'), (2, NULL, NULL, NULL), (3, 'three', -0.0, x'');"
    "INSERT INTO t2 VALUES ('k1', 1, 'x'), ('k2', 2, NULL);"
    "INSERT INTO t3 VALUES (1, 'b1', 10), (2, 'b1', 20), (1, 'b2', NULL);";

// One random statement (some fail on constraints; that is part of the mix).
std::string RandomStatement(std::mt19937& r) {
  auto n = [&](int m) { return std::to_string(r() % m); };
  auto val = [&]() -> std::string {
    switch (r() % 6) {
      case 0: return "NULL";
      case 1: return n(100);
      case 2: return std::to_string(static_cast<double>(r() % 1000) / 7.0);
      case 3: return "'s" + n(50) + "'";
      case 4: return "x'00ff" + std::string(r() % 2 ? "10" : "") + "'";
      default: return "''";
    }
  };
  switch (r() % 12) {
    case 0: return "INSERT INTO t1 VALUES (" + n(20) + ", " + val() + ", " + val() + ", " + val() + ")";
    case 1: return "INSERT OR REPLACE INTO t1 VALUES (" + n(20) + ", " + val() + ", " + val() + ", " + val() + ")";
    case 2: return "UPDATE t1 SET s = " + val() + ", n = " + val() + " WHERE id = " + n(20);
    case 3: return "UPDATE t1 SET id = " + n(30) + " WHERE id = " + n(20);  // a key change
    case 4: return "DELETE FROM t1 WHERE id = " + n(20);
    case 5: return "INSERT INTO t2 VALUES ('k" + n(5) + "', " + n(5) + ", " + val() + ")";
    case 6: return "UPDATE t2 SET v = " + val() + " WHERE k1 = 'k" + n(5) + "'";
    case 7: return "UPDATE t2 SET k2 = k2 + 100 WHERE k1 = 'k" + n(5) + "'";
    case 8: return "DELETE FROM t2 WHERE k2 = " + n(5);
    case 9: return "INSERT OR REPLACE INTO t3 VALUES (" + n(3) + ", 'b" + n(3) + "', " + val() + ")";
    case 10: return "UPDATE t3 SET c = " + val() + " WHERE a = " + n(3);
    default: return "UPDATE t1 SET s = s WHERE id = " + n(20);  // changes nothing
  }
}

sqlite3* Open() {
  sqlite3* db = nullptr;
  EXPECT_EQ(SQLITE_OK, sqlite3_open(":memory:", &db));
  EXPECT_EQ(SQLITE_OK, sqlite3_exec(db, kSchema, nullptr, nullptr, nullptr)) << sqlite3_errmsg(db);
  return db;
}

std::string Text(sqlite3_value* v) {
  if (v == nullptr) return "-";
  switch (sqlite3_value_type(v)) {
    case SQLITE_NULL: return "NULL";
    case SQLITE_INTEGER: return "i" + std::to_string(sqlite3_value_int64(v));
    case SQLITE_FLOAT: return "f" + std::to_string(sqlite3_value_double(v));
    case SQLITE_TEXT: return "t'" + std::string(reinterpret_cast<const char*>(sqlite3_value_text(v))) + "'";
    default: {
      std::string s = "b'";
      const auto* p = static_cast<const unsigned char*>(sqlite3_value_blob(v));
      for (int i = 0; i < sqlite3_value_bytes(v); ++i) s += std::to_string(p[i]) + ",";
      return s + "'";
    }
  }
}

// Every change of a changeset as one line, sorted: order within a table is
// not part of the format's meaning.
std::multiset<std::string> Changes(const std::string& cs) {
  std::multiset<std::string> out;
  sqlite3_changeset_iter* it = nullptr;
  EXPECT_EQ(SQLITE_OK, sqlite3changeset_start(&it, static_cast<int>(cs.size()), const_cast<char*>(cs.data())));
  while (sqlite3changeset_next(it) == SQLITE_ROW) {
    const char* tab;
    int ncol, op, indirect;
    sqlite3changeset_op(it, &tab, &ncol, &op, &indirect);
    unsigned char* pk;
    int npk;
    sqlite3changeset_pk(it, &pk, &npk);
    std::string line = std::string(tab) + " op" + std::to_string(op) + " ind" + std::to_string(indirect) + " pk";
    for (int i = 0; i < npk; ++i) line += std::to_string(pk[i]);
    for (int i = 0; i < ncol; ++i) {
      sqlite3_value* v = nullptr;
      if (op != SQLITE_INSERT) sqlite3changeset_old(it, i, &v);
      line += " o" + Text(v);
      v = nullptr;
      if (op != SQLITE_DELETE) sqlite3changeset_new(it, i, &v);
      line += " n" + Text(v);
    }
    out.insert(line);
  }
  EXPECT_EQ(SQLITE_OK, sqlite3changeset_finalize(it));
  return out;
}

std::string Dump(sqlite3* db) {
  std::string out;
  for (const char* q : {"SELECT quote(id), quote(s), quote(n), quote(bl) FROM t1 ORDER BY id",
                        "SELECT quote(k1), quote(k2), quote(v) FROM t2 ORDER BY k1, k2",
                        "SELECT quote(a), quote(b), quote(c) FROM t3 ORDER BY a, b",
                        "SELECT quote(id), quote(what) FROM log ORDER BY id"}) {
    sqlite3_exec(
        db, q,
        [](void* p, int n, char** v, char**) {
          auto* o = static_cast<std::string*>(p);
          for (int i = 0; i < n; ++i) *o += std::string(v[i]) + "|";
          *o += "\n";
          return 0;
        },
        &out, nullptr);
    out += "==\n";
  }
  return out;
}

std::string Apply(const std::string& cs) {
  sqlite3* db = Open();
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, nullptr);
  const int rc = sqlite3changeset_apply(
      db, static_cast<int>(cs.size()), const_cast<char*>(cs.data()), nullptr,
      [](void*, int, sqlite3_changeset_iter*) { return SQLITE_CHANGESET_ABORT; }, nullptr);
  EXPECT_EQ(SQLITE_OK, rc) << sqlite3_errmsg(db);
  std::string d = Dump(db);
  sqlite3_close(db);
  return d;
}

Capture g_capture;
std::map<std::string, TableInfo> g_tables;

void Hook(void*, sqlite3* db, int op, const char* zdb, const char* table, sqlite3_int64, sqlite3_int64) {
  if (std::string(zdb) != "main") return;
  auto t = g_tables.find(table);
  g_capture.OnPreUpdate(db, op, table, t == g_tables.end() ? nullptr : &t->second);
}

TEST(Capture, RandomStatementsGiveTheSessionExtensionsChangesAndReplayAlike) {
  for (unsigned seed = 1; seed <= 60; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 r(seed);
    std::vector<std::string> stmts;
    const int count = 1 + static_cast<int>(r() % 25);
    for (int i = 0; i < count; ++i) stmts.push_back(RandomStatement(r));

    // A: the session extension.
    sqlite3* a = Open();
    sqlite3_session* s = nullptr;
    ASSERT_EQ(SQLITE_OK, sqlite3session_create(a, "main", &s));
    ASSERT_EQ(SQLITE_OK, sqlite3session_attach(s, nullptr));
    for (const std::string& st : stmts) sqlite3_exec(a, st.c_str(), nullptr, nullptr, nullptr);
    int n = 0;
    void* p = nullptr;
    ASSERT_EQ(SQLITE_OK, sqlite3session_changeset(s, &n, &p));
    const std::string session_cs(static_cast<char*>(p), static_cast<size_t>(n));
    sqlite3_free(p);
    sqlite3session_delete(s);
    const std::string after_a = Dump(a);
    sqlite3_close(a);

    // B: Capture.
    sqlite3* b = Open();
    std::vector<std::pair<std::string, TableInfo>> tables;
    ASSERT_TRUE(ReadTables(b, &tables));
    g_tables.clear();
    for (auto& [name, t] : tables) g_tables[name] = t;
    sqlite3_preupdate_hook(b, Hook, nullptr);
    g_capture.Begin();
    for (const std::string& st : stmts) sqlite3_exec(b, st.c_str(), nullptr, nullptr, nullptr);
    g_capture.Stop();
    ASSERT_EQ(after_a, Dump(b));
    std::string capture_cs, digests, why;
    {
      StmtCache cache;
      ASSERT_TRUE(g_capture.Changeset(b, &cache, &capture_cs, &digests, &why)) << why;
      EXPECT_EQ(Changes(capture_cs).size() * 8, digests.size());
      cache.Clear();
    }
    sqlite3_close(b);

    EXPECT_EQ(Changes(session_cs), Changes(capture_cs));
    EXPECT_EQ(g_capture.empty() && session_cs.empty(), capture_cs.empty() && session_cs.empty());
    // Replayed on the starting database, both give the database A ended with
    // (triggers off: their effects are in the changesets).
    EXPECT_EQ(after_a, Apply(capture_cs));
    EXPECT_EQ(Apply(session_cs), Apply(capture_cs));
  }
}

}  // namespace
}  // namespace xtm::sqlite
