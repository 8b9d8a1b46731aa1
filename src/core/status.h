// Status and Result<T>: the error channel for anything a user, a file or a flag can cause.
// Programmer bugs use ESCALE_CHECK (check.h) instead; user input must never reach an abort.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace escale {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,  // a flag or option value is wrong
  kNotFound,         // a file, tensor or key is missing
  kIo,               // the operating system refused (open, read, write, rename, fsync)
  kFormat,           // a file's contents break its format's rules
  kUnsupported,      // well-formed, but not something escale handles
  kInternal,         // an invariant broke: a bug, reported instead of crashing
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefix context ("reading model.safetensors: ") while keeping the code.
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {ErrorCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
inline Status IoError(std::string m) { return {ErrorCode::kIo, std::move(m)}; }
inline Status FormatError(std::string m) { return {ErrorCode::kFormat, std::move(m)}; }
inline Status Unsupported(std::string m) { return {ErrorCode::kUnsupported, std::move(m)}; }
inline Status InternalError(std::string m) { return {ErrorCode::kInternal, std::move(m)}; }

// A value or the Status that explains why there is none (C++23 std::expected is not in C++20).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    if (std::get<Status>(v_).ok()) v_ = Status(ErrorCode::kInternal, "Result built from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace escale

#define ESCALE_CONCAT_INNER(a, b) a##b
#define ESCALE_CONCAT(a, b) ESCALE_CONCAT_INNER(a, b)

// Return the Status of `expr` from the enclosing function when it is an error.
#define ESCALE_RETURN_IF_ERROR(expr)          \
  do {                                        \
    ::escale::Status _escale_st = (expr);     \
    if (!_escale_st.ok()) return _escale_st;  \
  } while (0)

#define ESCALE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

// `ESCALE_ASSIGN_OR_RETURN(auto x, f());` binds the value or returns the error.
#define ESCALE_ASSIGN_OR_RETURN(lhs, expr) \
  ESCALE_ASSIGN_OR_RETURN_IMPL(ESCALE_CONCAT(_escale_r_, __LINE__), lhs, expr)
