// Status and Result<T>: how every mixq library reports failure.
//
// A Status is either ok or a (kind, one-line message) pair. Result<T> holds a
// value or a non-ok Status; its member names follow std::expected so a later
// switch to the standard type is mechanical. Both are [[nodiscard]].
//
// Thread safety: plain values; const methods are safe to call concurrently.
#ifndef MIXQ_BASE_STATUS_H_
#define MIXQ_BASE_STATUS_H_

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace mixq {

enum class StatusKind {
  kOk,
  kInvalidArgument,  // a flag or value the caller gave is wrong
  kCorruption,       // input data is malformed or out of bounds
  kNotSupported,     // well-formed input that mixq does not handle
  kIOError,          // the operating system refused a read or write
  kInfeasible,       // a request that no answer satisfies (e.g. a budget)
  kInternal,         // a bug in mixq
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) { return {StatusKind::kInvalidArgument, std::move(msg)}; }
  static Status Corruption(std::string msg) { return {StatusKind::kCorruption, std::move(msg)}; }
  static Status NotSupported(std::string msg) { return {StatusKind::kNotSupported, std::move(msg)}; }
  static Status IOError(std::string msg) { return {StatusKind::kIOError, std::move(msg)}; }
  static Status Infeasible(std::string msg) { return {StatusKind::kInfeasible, std::move(msg)}; }
  static Status Internal(std::string msg) { return {StatusKind::kInternal, std::move(msg)}; }

  bool ok() const { return kind_ == StatusKind::kOk; }
  StatusKind kind() const { return kind_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message is "<context>: <message>".
  Status WithContext(const std::string& context) const {
    return ok() ? *this : Status(kind_, context + ": " + message_);
  }

 private:
  Status(StatusKind kind, std::string msg) : kind_(kind), message_(std::move(msg)) {}
  StatusKind kind_ = StatusKind::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : data_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(data_).ok());
  }

  bool has_value() const { return std::holds_alternative<T>(data_); }
  explicit operator bool() const { return has_value(); }

  // REQUIRES: has_value().
  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }

  // REQUIRES: !has_value().
  const Status& error() const { return std::get<Status>(data_); }
  Status status() const { return has_value() ? Status::Ok() : error(); }

 private:
  std::variant<T, Status> data_;
};

namespace internal {
inline Status ToStatus(const Status& s) { return s; }
template <typename T>
Status ToStatus(const Result<T>& r) {
  return r.status();
}
}  // namespace internal

}  // namespace mixq

// Returns early from the enclosing function when `expr` (a Status or Result) failed.
#define MIXQ_TRY(expr)                                                  \
  do {                                                                  \
    ::mixq::Status mixq_try_status_ = ::mixq::internal::ToStatus(expr); \
    if (!mixq_try_status_.ok()) return mixq_try_status_;                \
  } while (0)

#define MIXQ_STATUS_CONCAT_INNER_(a, b) a##b
#define MIXQ_STATUS_CONCAT_(a, b) MIXQ_STATUS_CONCAT_INNER_(a, b)

// `MIXQ_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from the value of a
// Result, or returns its Status from the enclosing function. `lhs` may also
// be an existing variable. Not usable as the body of an unbraced if.
#define MIXQ_ASSIGN_OR_RETURN(lhs, ...) \
  MIXQ_ASSIGN_OR_RETURN_IMPL_(MIXQ_STATUS_CONCAT_(mixq_result_, __LINE__), lhs, __VA_ARGS__)
#define MIXQ_ASSIGN_OR_RETURN_IMPL_(result, lhs, ...) \
  auto result = (__VA_ARGS__);                        \
  if (!result.has_value()) return result.error();     \
  lhs = std::move(result).value()

#endif  // MIXQ_BASE_STATUS_H_
