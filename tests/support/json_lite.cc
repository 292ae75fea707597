#include "support/json_lite.h"

#include <cctype>
#include <cstdlib>

namespace xtm::test {
namespace {

struct Parser {
  const std::string& t;
  size_t i = 0;
  void Ws() {
    while (i < t.size() && std::isspace(static_cast<unsigned char>(t[i]))) ++i;
  }
  bool Lit(const char* w) {
    size_t n = std::char_traits<char>::length(w);
    if (t.compare(i, n, w) != 0) return false;
    i += n;
    return true;
  }
  bool Str(std::string* s) {
    if (i >= t.size() || t[i] != '"') return false;
    ++i;
    while (i < t.size() && t[i] != '"') {
      if (t[i] == '\\') {
        if (++i >= t.size()) return false;
        char e = t[i++];
        switch (e) {
          case 'n': *s += '\n'; break;
          case 't': *s += '\t'; break;
          case 'r': *s += '\r'; break;
          case 'u': {
            if (i + 4 > t.size()) return false;
            *s += static_cast<char>(std::strtol(t.substr(i, 4).c_str(), nullptr, 16));
            i += 4;
            break;
          }
          default: *s += e;
        }
      } else {
        *s += t[i++];
      }
    }
    if (i >= t.size()) return false;
    ++i;
    return true;
  }
  bool Value(JsonValue* v) {
    Ws();
    if (i >= t.size()) return false;
    char ch = t[i];
    if (ch == '{') {
      ++i;
      v->type = JsonValue::Type::kObject;
      Ws();
      if (i < t.size() && t[i] == '}') return ++i, true;
      for (;;) {
        Ws();
        std::string k;
        if (!Str(&k)) return false;
        Ws();
        if (i >= t.size() || t[i++] != ':') return false;
        if (!Value(&v->o[k])) return false;
        Ws();
        if (i < t.size() && t[i] == ',') { ++i; continue; }
        if (i < t.size() && t[i] == '}') return ++i, true;
        return false;
      }
    }
    if (ch == '[') {
      ++i;
      v->type = JsonValue::Type::kArray;
      Ws();
      if (i < t.size() && t[i] == ']') return ++i, true;
      for (;;) {
        v->a.emplace_back();
        if (!Value(&v->a.back())) return false;
        Ws();
        if (i < t.size() && t[i] == ',') { ++i; continue; }
        if (i < t.size() && t[i] == ']') return ++i, true;
        return false;
      }
    }
    if (ch == '"') {
      v->type = JsonValue::Type::kString;
      return Str(&v->s);
    }
    if (Lit("true")) { v->type = JsonValue::Type::kBool; v->b = true; return true; }
    if (Lit("false")) { v->type = JsonValue::Type::kBool; return true; }
    if (Lit("null")) return true;
    char* end = nullptr;
    v->n = std::strtod(t.c_str() + i, &end);
    if (end == t.c_str() + i) return false;
    v->type = JsonValue::Type::kNumber;
    i = static_cast<size_t>(end - t.c_str());
    return true;
  }
};

}  // namespace

bool ParseJson(const std::string& text, JsonValue* out) {
  Parser p{text};
  *out = JsonValue();
  if (!p.Value(out)) return false;
  p.Ws();
  return p.i == text.size();
}

}  // namespace xtm::test
