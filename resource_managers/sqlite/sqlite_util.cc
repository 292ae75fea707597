#include "sqlite/sqlite_util.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace xtm::sqlite {

Stmt::Stmt(sqlite3* db, const std::string& sql) {
  if (sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &st_, nullptr) != SQLITE_OK) {
    sqlite3_finalize(st_);
    st_ = nullptr;
  }
}

int ExecSql(sqlite3* db, const std::string& sql) {
  return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
}

std::string Ident(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

void Digest::Mix(const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    h_ ^= b[i];
    h_ *= 1099511628211ull;
  }
}

void Digest::AddTyped(int type, int64_t i, double d, const void* p, size_t n) {
  unsigned char t = static_cast<unsigned char>(type);
  Mix(&t, 1);
  switch (type) {
    case SQLITE_INTEGER: Mix(&i, sizeof i); break;
    case SQLITE_FLOAT: Mix(&d, sizeof d); break;
    case SQLITE_TEXT:
    case SQLITE_BLOB: {
      uint64_t len = n;
      Mix(&len, sizeof len);
      if (n) Mix(p, n);
      break;
    }
    default: break;  // NULL: the type alone
  }
}

void Digest::Add(sqlite3_value* v) {
  int type = sqlite3_value_type(v);
  const void* p = nullptr;
  size_t n = 0;
  if (type == SQLITE_TEXT) p = sqlite3_value_text(v);
  if (type == SQLITE_BLOB) p = sqlite3_value_blob(v);
  if (type == SQLITE_TEXT || type == SQLITE_BLOB) n = static_cast<size_t>(sqlite3_value_bytes(v));
  AddTyped(type, type == SQLITE_INTEGER ? sqlite3_value_int64(v) : 0,
           type == SQLITE_FLOAT ? sqlite3_value_double(v) : 0.0, p, n);
}

void Digest::AddColumn(sqlite3_stmt* st, int col) {
  int type = sqlite3_column_type(st, col);
  const void* p = nullptr;
  size_t n = 0;
  if (type == SQLITE_TEXT) p = sqlite3_column_text(st, col);
  if (type == SQLITE_BLOB) p = sqlite3_column_blob(st, col);
  if (type == SQLITE_TEXT || type == SQLITE_BLOB) n = static_cast<size_t>(sqlite3_column_bytes(st, col));
  AddTyped(type, type == SQLITE_INTEGER ? sqlite3_column_int64(st, col) : 0,
           type == SQLITE_FLOAT ? sqlite3_column_double(st, col) : 0.0, p, n);
}

void Digest::AddBytes(std::string_view b) {
  uint64_t len = b.size();
  Mix(&len, sizeof len);
  Mix(b.data(), b.size());
}

uint64_t SchemaFingerprint(sqlite3* db) {
  Stmt st(db, "SELECT type, name, tbl_name, coalesce(sql, '') FROM main.sqlite_schema "
              "ORDER BY type, name");
  Digest d;
  if (!st.ok()) return 0;
  while (st.Step() == SQLITE_ROW) {
    for (int i = 0; i < 4; ++i) d.AddBytes(st.Text(i));
  }
  return d.value();
}

namespace {
std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
}  // namespace

bool ReadTables(sqlite3* db, std::vector<std::pair<std::string, TableInfo>>* out) {
  out->clear();
  std::vector<std::pair<std::string, std::string>> tables;
  {
    Stmt st(db, "SELECT name, coalesce(sql, '') FROM main.sqlite_schema WHERE type = 'table'");
    if (!st.ok()) return false;
    while (st.Step() == SQLITE_ROW) tables.emplace_back(st.Text(0), st.Text(1));
  }
  for (auto& [name, sql] : tables) {
    TableInfo t;
    const std::string up = Upper(sql);
    t.is_virtual = up.rfind("CREATE VIRTUAL TABLE", 0) == 0;
    const bool without_rowid = up.find("WITHOUT ROWID") != std::string::npos;
    if (!t.is_virtual) {
      Stmt info(db, "PRAGMA main.table_info(" + Ident(name) + ")");
      if (!info.ok()) return false;
      std::vector<std::string> types;
      std::vector<bool> notnull;
      while (info.Step() == SQLITE_ROW) {
        t.columns.push_back(info.Text(1));
        types.push_back(Upper(info.Text(2)));
        notnull.push_back(info.Int(3) != 0);
        t.pk.push_back(info.Int(5) > 0);
        t.pk_pos.push_back(static_cast<int>(info.Int(5)));
      }
      int npk = static_cast<int>(std::count(t.pk.begin(), t.pk.end(), true));
      t.has_pk = npk > 0;
      bool integer_alias = false;
      if (npk == 1) {
        size_t i = static_cast<size_t>(std::find(t.pk.begin(), t.pk.end(), true) - t.pk.begin());
        integer_alias = types[i] == "INTEGER";
      }
      if (t.has_pk && !without_rowid && !integer_alias) {
        for (size_t i = 0; i < t.pk.size(); ++i) {
          if (t.pk[i] && !notnull[i]) t.nullable_pk = true;
        }
      }
    }
    out->emplace_back(name, std::move(t));
  }
  return true;
}

}  // namespace xtm::sqlite
