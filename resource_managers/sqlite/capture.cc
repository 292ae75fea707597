#include "sqlite/capture.h"

#include <cstring>

namespace xtm::sqlite {
namespace {

// SQLite's varint: big-endian groups of 7 bits, the high bit set on all but
// the last; a ninth byte, if needed, carries 8 bits.
void PutVarint(std::string* out, uint64_t v) {
  unsigned char buf[10];
  if (v & (static_cast<uint64_t>(0xff000000) << 32)) {
    buf[8] = static_cast<unsigned char>(v);
    v >>= 8;
    for (int i = 7; i >= 0; --i) {
      buf[i] = static_cast<unsigned char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    out->append(reinterpret_cast<char*>(buf), 9);
    return;
  }
  int n = 0;
  do {
    buf[n++] = static_cast<unsigned char>((v & 0x7f) | 0x80);
    v >>= 7;
  } while (v != 0);
  buf[0] &= 0x7f;
  for (int i = n - 1; i >= 0; --i) out->push_back(static_cast<char>(buf[i]));
}

void PutBig64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>((v >> shift) & 0xff));
}

}  // namespace

bool Capture::Value::operator==(const Value& o) const {
  if (type != o.type) return false;
  switch (type) {
    case SQLITE_INTEGER: return i == o.i;
    case SQLITE_FLOAT: return std::memcmp(&d, &o.d, sizeof d) == 0;
    case SQLITE_TEXT:
    case SQLITE_BLOB: return s == o.s;
    default: return true;
  }
}

Capture::Value Capture::Copy(sqlite3_value* v) {
  Value x;
  x.type = v ? sqlite3_value_type(v) : SQLITE_NULL;
  switch (x.type) {
    case SQLITE_INTEGER: x.i = sqlite3_value_int64(v); break;
    case SQLITE_FLOAT: x.d = sqlite3_value_double(v); break;
    case SQLITE_TEXT: {
      const unsigned char* p = sqlite3_value_text(v);
      x.s.assign(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_value_bytes(v)));
      break;
    }
    case SQLITE_BLOB: {
      const void* p = sqlite3_value_blob(v);
      const int n = sqlite3_value_bytes(v);
      if (n > 0) x.s.assign(static_cast<const char*>(p), static_cast<size_t>(n));
      break;
    }
    default: break;
  }
  return x;
}

void Capture::Put(std::string* out, const Value& v) {
  out->push_back(static_cast<char>(v.type));
  switch (v.type) {
    case SQLITE_INTEGER: PutBig64(out, static_cast<uint64_t>(v.i)); break;
    case SQLITE_FLOAT: {
      uint64_t bits;
      std::memcpy(&bits, &v.d, sizeof bits);
      PutBig64(out, bits);
      break;
    }
    case SQLITE_TEXT:
    case SQLITE_BLOB:
      PutVarint(out, v.s.size());
      out->append(v.s);
      break;
    default: break;
  }
}

void Capture::Begin() {
  Clear();
  on_ = true;
}

void Capture::Clear() {
  on_ = false;
  rows_ = 0;
  tables_.clear();
  by_name_.clear();
  touched_.clear();
  problem_.clear();
}

bool Capture::Key(const TableInfo& t, sqlite3* db, bool old_values, std::vector<Value>* key, std::string* encoded) {
  key->clear();
  encoded->clear();
  for (size_t c = 0; c < t.columns.size(); ++c) {
    if (!t.pk[c]) continue;
    sqlite3_value* v = nullptr;
    if ((old_values ? sqlite3_preupdate_old(db, static_cast<int>(c), &v)
                    : sqlite3_preupdate_new(db, static_cast<int>(c), &v)) != SQLITE_OK) {
      return false;
    }
    Value x = Copy(v);
    if (x.type == SQLITE_NULL) return false;
    Put(encoded, x);
    key->push_back(std::move(x));
  }
  return true;
}

bool Capture::KeyChanged(const TableInfo& t, sqlite3* db) {
  for (size_t c = 0; c < t.columns.size(); ++c) {
    if (!t.pk[c]) continue;
    sqlite3_value* o = nullptr;
    sqlite3_value* n = nullptr;
    if (sqlite3_preupdate_old(db, static_cast<int>(c), &o) != SQLITE_OK ||
        sqlite3_preupdate_new(db, static_cast<int>(c), &n) != SQLITE_OK || o == nullptr || n == nullptr) {
      return true;  // cannot tell: note the new row too
    }
    const int type = sqlite3_value_type(o);
    if (type != sqlite3_value_type(n)) return true;
    switch (type) {
      case SQLITE_INTEGER:
        if (sqlite3_value_int64(o) != sqlite3_value_int64(n)) return true;
        break;
      case SQLITE_FLOAT: {
        const double a = sqlite3_value_double(o), b = sqlite3_value_double(n);
        if (std::memcmp(&a, &b, sizeof a) != 0) return true;
        break;
      }
      case SQLITE_TEXT:
      case SQLITE_BLOB: {
        const void* a = type == SQLITE_TEXT ? static_cast<const void*>(sqlite3_value_text(o)) : sqlite3_value_blob(o);
        const int na = sqlite3_value_bytes(o);
        const void* b = type == SQLITE_TEXT ? static_cast<const void*>(sqlite3_value_text(n)) : sqlite3_value_blob(n);
        const int nb = sqlite3_value_bytes(n);
        if (na != nb || (na > 0 && std::memcmp(a, b, static_cast<size_t>(na)) != 0)) return true;
        break;
      }
      default: return true;  // a NULL key: Note decides
    }
  }
  return false;
}

void Capture::Note(Table* tab, sqlite3* db, bool existed, bool old_values) {
  std::vector<Value> key;
  std::string encoded;
  if (!Key(tab->info, db, old_values, &key, &encoded)) return;
  if (tab->index.count(encoded)) return;  // only the row as it was at the first change counts
  Row r;
  r.key = std::move(key);
  r.existed = existed;
  r.indirect = sqlite3_preupdate_depth(db) > 0;
  if (existed) {
    const int n = sqlite3_preupdate_count(db);
    r.old.reserve(static_cast<size_t>(n));
    for (int c = 0; c < n; ++c) {
      sqlite3_value* v = nullptr;
      sqlite3_preupdate_old(db, c, &v);
      r.old.push_back(Copy(v));
    }
  }
  tab->index.emplace(std::move(encoded), tab->rows.size());
  tab->rows.push_back(std::move(r));
  ++rows_;
}

void Capture::OnPreUpdate(sqlite3* db, int op, const char* table, const TableInfo* t) {
  if (!on_) return;
  touched_.insert(table);
  if (t != nullptr && !t->has_pk) return;  // refused at prepare (no key to replay by)
  if (t == nullptr || static_cast<int>(t->columns.size()) != sqlite3_preupdate_count(db)) {
    if (problem_.empty()) {
      problem_ = std::string("table ") + table +
                 (t == nullptr ? " is not in the schema read at xa_start"
                               : " has columns a changeset cannot carry (generated or hidden columns)");
    }
    return;
  }
  auto it = by_name_.find(table);
  if (it == by_name_.end()) {
    it = by_name_.emplace(table, tables_.size()).first;
    tables_.push_back(Table{table, *t, {}, {}});
  }
  Table* tab = &tables_[it->second];
  switch (op) {
    case SQLITE_INSERT: Note(tab, db, /*existed=*/false, /*old_values=*/false); break;
    case SQLITE_DELETE: Note(tab, db, /*existed=*/true, /*old_values=*/true); break;
    case SQLITE_UPDATE:
      // A changed key is a delete of the old row and an insert of the new.
      Note(tab, db, /*existed=*/true, /*old_values=*/true);
      if (KeyChanged(tab->info, db)) Note(tab, db, /*existed=*/false, /*old_values=*/false);
      break;
    default: break;
  }
}

bool Capture::Changeset(sqlite3* db, StmtCache* cache, std::string* out, std::string* digests,
                        std::string* why) const {
  out->clear();
  digests->clear();
  auto pre_image = [&](const Row& r) {
    uint64_t h = 0;
    if (r.existed) {
      Digest d;
      for (const Value& v : r.old) d.AddTyped(v.type, v.i, v.d, v.s.data(), v.s.size());
      h = d.value();
    }
    char b[8];
    std::memcpy(b, &h, 8);
    digests->append(b, 8);
  };
  if (!problem_.empty()) {
    *why = problem_;
    return false;
  }
  for (const Table& tab : tables_) {
    const TableInfo& t = tab.info;
    const size_t ncol = t.columns.size();
    std::string sql = "SELECT ";
    for (size_t c = 0; c < ncol; ++c) sql += (c ? ", " : "") + Ident(t.columns[c]);
    sql += " FROM main." + Ident(tab.name) + " WHERE ";
    int n = 0;
    for (size_t c = 0; c < ncol; ++c) {
      if (!t.pk[c]) continue;
      sql += (n ? " AND " : "") + Ident(t.columns[c]) + " = ?" + std::to_string(n + 1);
      ++n;
    }
    std::string changes;
    std::vector<Value> now;
    Stmt* st = cache->GetRaw(db, sql);
    if (!st->ok()) {
      *why = "cannot read " + tab.name + ": " + sqlite3_errmsg(db);
      return false;
    }
    for (const Row& r : tab.rows) {
      for (size_t k = 0; k < r.key.size(); ++k) {
        const Value& v = r.key[k];
        const int i = static_cast<int>(k) + 1;
        switch (v.type) {
          case SQLITE_INTEGER: sqlite3_bind_int64(st->get(), i, v.i); break;
          case SQLITE_FLOAT: sqlite3_bind_double(st->get(), i, v.d); break;
          case SQLITE_TEXT:
            sqlite3_bind_text(st->get(), i, v.s.data(), static_cast<int>(v.s.size()), SQLITE_STATIC);
            break;
          default:
            sqlite3_bind_blob(st->get(), i, v.s.data(), static_cast<int>(v.s.size()), SQLITE_STATIC);
            break;
        }
      }
      const int s = st->Step();
      const bool exists = s == SQLITE_ROW;
      if (s != SQLITE_ROW && s != SQLITE_DONE) {
        *why = "cannot read a changed row of " + tab.name + ": " + sqlite3_errmsg(db);
        st->Reset();
        return false;
      }
      now.clear();
      if (exists) {
        for (size_t c = 0; c < ncol; ++c) now.push_back(Copy(sqlite3_column_value(st->get(), static_cast<int>(c))));
      }
      st->Reset();
      const char indirect = r.indirect ? 1 : 0;
      if (!r.existed) {
        if (!exists) continue;  // inserted and deleted again
        changes.push_back(SQLITE_INSERT);
        changes.push_back(indirect);
        for (const Value& v : now) Put(&changes, v);
        pre_image(r);
      } else if (!exists) {
        changes.push_back(SQLITE_DELETE);
        changes.push_back(indirect);
        for (const Value& v : r.old) Put(&changes, v);
        pre_image(r);
      } else {
        bool any = false;
        for (size_t c = 0; c < ncol && !any; ++c) any = !(r.old[c] == now[c]);
        if (!any) continue;  // ends as it began
        changes.push_back(SQLITE_UPDATE);
        changes.push_back(indirect);
        pre_image(r);
        for (size_t c = 0; c < ncol; ++c) {
          if (t.pk[c] || !(r.old[c] == now[c])) {
            Put(&changes, r.old[c]);
          } else {
            changes.push_back(0);  // undefined
          }
        }
        for (size_t c = 0; c < ncol; ++c) {
          if (!(r.old[c] == now[c])) {
            Put(&changes, now[c]);
          } else {
            changes.push_back(0);
          }
        }
      }
    }
    if (changes.empty()) continue;
    out->push_back('T');
    PutVarint(out, ncol);
    // As the session extension writes it: each key column's place in the key.
    for (size_t c = 0; c < ncol; ++c) out->push_back(static_cast<char>(t.pk_pos[c]));
    out->append(tab.name);
    out->push_back('\0');
    out->append(changes);
  }
  return true;
}

}  // namespace xtm::sqlite
