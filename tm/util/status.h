// Status: the result of an internal operation. Inside the TM errors travel as
// Status values, never as exceptions; the C API turns them into XATM_* codes
// in one place.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace xtm {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,         // the thing asked for does not exist
    kCorruption,       // persistent data is damaged; the message says where
    kIOError,          // a system call failed; nothing was made durable
    kInvalidArgument,  // bad input; the message says what to do
    kBusy,             // owned by someone else (a lock held by another process)
    kNotSupported,     // e.g. a log written by a newer format version
    kUnknownOutcome,   // an operation may or may not have taken effect
    kFenced,           // refused: xatmd declared this session dead and resolved its transactions
  };

  Status() = default;
  static Status OK() { return Status(); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status InvalidArgument(std::string msg) {
    return Status(Code::kInvalidArgument, std::move(msg));
  }
  static Status Busy(std::string msg) { return Status(Code::kBusy, std::move(msg)); }
  static Status NotSupported(std::string msg) { return Status(Code::kNotSupported, std::move(msg)); }
  static Status UnknownOutcome(std::string msg) {
    return Status(Code::kUnknownOutcome, std::move(msg));
  }
  static Status Fenced(std::string msg) { return Status(Code::kFenced, std::move(msg)); }
  // An IOError whose message ends with strerror(err).
  static Status FromErrno(std::string_view what, int err);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsIOError() const { return code_ == Code::kIOError; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsBusy() const { return code_ == Code::kBusy; }
  bool IsNotSupported() const { return code_ == Code::kNotSupported; }
  bool IsUnknownOutcome() const { return code_ == Code::kUnknownOutcome; }
  bool IsFenced() const { return code_ == Code::kFenced; }

  const std::string& message() const { return msg_; }
  // "Corruption: <message>", or "OK".
  std::string ToString() const;

 private:
  Status(Code c, std::string msg) : code_(c), msg_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string msg_;
};

}  // namespace xtm
