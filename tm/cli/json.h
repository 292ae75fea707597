// A small JSON writer for the admin tool's --json output.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace xtm::cli {

class Json {
 public:
  Json& BeginObject() { Sep(); out_ += '{'; first_ = true; return *this; }
  Json& EndObject() { out_ += '}'; first_ = false; return *this; }
  Json& BeginArray() { Sep(); out_ += '['; first_ = true; return *this; }
  Json& EndArray() { out_ += ']'; first_ = false; return *this; }
  Json& Key(std::string_view k) {
    Sep();
    Str(k);
    out_ += ':';
    first_ = true;  // the value follows without a comma
    return *this;
  }
  Json& Value(std::string_view v) { Sep(); Str(v); return *this; }
  Json& Value(const char* v) { return Value(std::string_view(v)); }
  Json& Value(int64_t v) { Sep(); out_ += std::to_string(v); return *this; }
  Json& Value(int v) { return Value(static_cast<int64_t>(v)); }
  Json& Value(bool v) { Sep(); out_ += v ? "true" : "false"; return *this; }
  Json& Null() { Sep(); out_ += "null"; return *this; }
  template <typename T>
  Json& Field(std::string_view k, const T& v) { return Key(k).Value(v); }
  const std::string& str() const { return out_; }

 private:
  void Sep() {
    if (!first_) out_ += ',';
    first_ = false;
  }
  void Str(std::string_view s) {
    out_ += '"';
    for (unsigned char c : s) {
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\r': out_ += "\\r"; break;
        case '\t': out_ += "\\t"; break;
        default:
          if (c < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            out_ += b;
          } else {
            out_ += static_cast<char>(c);
          }
      }
    }
    out_ += '"';
  }
  std::string out_;
  bool first_ = true;
};

}  // namespace xtm::cli
