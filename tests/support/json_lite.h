// A small JSON reader for tests that parse the admin tool's --json output.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace xtm::test {

struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject } type = Type::kNull;
  bool b = false;
  double n = 0;
  std::string s;
  std::vector<JsonValue> a;
  std::map<std::string, JsonValue> o;
  const JsonValue& operator[](const std::string& k) const {
    static const JsonValue kNull;
    auto it = o.find(k);
    return it == o.end() ? kNull : it->second;
  }
  const JsonValue& operator[](size_t i) const { return a.at(i); }
  size_t size() const { return type == Type::kArray ? a.size() : o.size(); }
};

// false if text is not one complete JSON value.
bool ParseJson(const std::string& text, JsonValue* out);

}  // namespace xtm::test
