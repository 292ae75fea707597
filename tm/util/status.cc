#include "util/status.h"

#include <cstring>

namespace xtm {

Status Status::FromErrno(std::string_view what, int err) {
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  return Status(Code::kIOError, std::move(msg));
}

std::string Status::ToString() const {
  const char* name = "OK";
  switch (code_) {
    case Code::kOk: return "OK";
    case Code::kNotFound: name = "Not found"; break;
    case Code::kCorruption: name = "Corruption"; break;
    case Code::kIOError: name = "I/O error"; break;
    case Code::kInvalidArgument: name = "Invalid argument"; break;
    case Code::kBusy: name = "Busy"; break;
    case Code::kNotSupported: name = "Not supported"; break;
    case Code::kUnknownOutcome: name = "Unknown outcome"; break;
    case Code::kFenced: name = "Fenced"; break;
  }
  return std::string(name) + ": " + msg_;
}

}  // namespace xtm
