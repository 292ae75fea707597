// Small helpers over the SQLite C API used by the SQLite RM.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace xtm::sqlite {

// A prepared statement, finalized on destruction.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql);
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return st_ != nullptr; }
  sqlite3_stmt* get() const { return st_; }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  Stmt& Bind(int i, std::string_view blob) {
    sqlite3_bind_blob(st_, i, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindText(int i, std::string_view text) {
    sqlite3_bind_text(st_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindValue(int i, sqlite3_value* v) {
    sqlite3_bind_value(st_, i, v);
    return *this;
  }
  int Step() { return sqlite3_step(st_); }
  void Reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  int64_t Int(int col) const { return sqlite3_column_int64(st_, col); }
  std::string Blob(int col) const {
    const void* p = sqlite3_column_blob(st_, col);
    int n = sqlite3_column_bytes(st_, col);
    return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
  }
  std::string Text(int col) const {
    const unsigned char* p = sqlite3_column_text(st_, col);
    return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
  }

 private:
  sqlite3_stmt* st_ = nullptr;
};

// Prepared statements kept for reuse, by SQL text. Get() hands one out
// reset, with its bindings cleared; the Use guard resets it again when done,
// so that no read transaction outlives the use.
class StmtCache {
 public:
  class Use {
   public:
    explicit Use(Stmt* s) : s_(s) {}
    ~Use() {
      if (s_) s_->Reset();
    }
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;
    Stmt* operator->() const { return s_; }
    Stmt& operator*() const { return *s_; }
    bool ok() const { return s_ != nullptr && s_->ok(); }

   private:
    Stmt* s_;
  };
  Use Get(sqlite3* db, std::string_view sql) { return Use(GetRaw(db, sql)); }
  // As Get, without the guard: the caller resets the statement after use.
  Stmt* GetRaw(sqlite3* db, std::string_view sql) {
    auto it = stmts_.find(sql);  // no string made for the lookup
    if (it == stmts_.end()) {
      std::string text(sql);
      auto st = std::make_unique<Stmt>(db, text);
      it = stmts_.emplace(std::move(text), std::move(st)).first;
    }
    if (!it->second->ok()) {  // retry a failed prepare next time
      Stmt* failed = it->second.release();
      stmts_.erase(it);
      failed_.reset(failed);
      return failed;
    }
    it->second->Reset();
    return it->second.get();
  }
  void Clear() { stmts_.clear(); }
  bool Owns(sqlite3_stmt* st) const {
    for (const auto& [sql, s] : stmts_) {
      if (s->get() == st) return true;
    }
    return false;
  }

 private:
  std::map<std::string, std::unique_ptr<Stmt>, std::less<>> stmts_;
  std::unique_ptr<Stmt> failed_;
};

// Runs sql (one or more statements, no results); SQLITE_OK or the error code.
int ExecSql(sqlite3* db, const std::string& sql);

// "name" quoted as an SQL identifier.
std::string Ident(std::string_view name);

// A 64-bit FNV-1a digest, fed with typed values in a canonical encoding.
class Digest {
 public:
  void Add(sqlite3_value* v);  // NULL pointer is not allowed
  void AddBytes(std::string_view b);
  void AddColumn(sqlite3_stmt* st, int col);
  // A value by its parts (as Add and AddColumn feed it).
  void AddTyped(int type, int64_t i, double d, const void* p, size_t n);
  uint64_t value() const { return h_; }

 private:
  void Mix(const void* p, size_t n);
  uint64_t h_ = 1469598103934665603ull;
};

// A digest of the database schema (sqlite_schema), to detect a schema change
// between prepare and a recovery commit.
uint64_t SchemaFingerprint(sqlite3* db);

struct TableInfo {
  std::vector<std::string> columns;  // in table order
  std::vector<bool> pk;              // per column
  std::vector<int> pk_pos;           // per column: its 1-based place in the primary key, 0 if none
  bool has_pk = false;
  bool is_virtual = false;
  bool nullable_pk = false;  // a rowid table whose declared key columns accept NULL
};

// Reads the schema of the main database. false on error.
bool ReadTables(sqlite3* db, std::vector<std::pair<std::string, TableInfo>>* out);

}  // namespace xtm::sqlite
