#pragma once

#include <tl/expected.hpp>

#include <stdexcept>
#include <string>
#include <string_view>

namespace aeg {

/// Error codes shared by every layer. The message of an `error` says what to do about it.
enum class errc {
  cancelled = 1,    ///< the operation was cancelled (stop token, scope, actor exit)
  timeout,          ///< a deadline passed before a reply came
  invalid_argument, ///< the caller passed a value the operation cannot accept
  out_of_memory,    ///< a capacity budget (device memory, pool, arena) is exhausted
  unavailable,      ///< a backend, device or peer is not there (not built, no GPU, actor down)
  device_error,     ///< a device reported a failure while running work
  not_found,        ///< a named thing (model, file, backend) does not exist
  corrupt_data,     ///< input data (a file, a message) is malformed
  closed,           ///< the channel, stream or session was closed
  internal,         ///< a failure that points at a bug in Aegaeon
};

/// Short lowercase name of `code`, e.g. "out_of_memory".
std::string_view to_string(errc code) noexcept;

/// An expected failure: a code and a message that tells the user what to do.
struct error {
  errc code = errc::internal;
  std::string message;

  /// "out_of_memory: device cpu:0 has 1024 bytes free, 4096 requested".
  std::string to_string() const;
};

/// A value or an `error`. Results cross layer and thread boundaries; exceptions do not.
template <class T>
using result = tl::expected<T, error>;

/// Makes the error side of a `result`.
inline tl::unexpected<error> fail(errc code, std::string message) {
  return tl::unexpected<error>(error{code, std::move(message)});
}

/// An `error` carried as an exception inside one coroutine chain: `co_await` rethrows it, the
/// owner of the chain (scope, actor, sync_wait) turns it back into a value.
class error_exception : public std::runtime_error {
public:
  explicit error_exception(error e);
  const aeg::error& error() const noexcept { return error_; }

private:
  aeg::error error_;
};

/// Thrown into a coroutine whose wait was cancelled (stop token or scope cancel).
class cancelled_exception : public error_exception {
public:
  explicit cancelled_exception(std::string message = "operation cancelled");
};

/// Returns the value of `r`, or throws its error as `error_exception`.
template <class T>
T value_or_throw(result<T> r) {
  if (!r)
    throw error_exception(std::move(r.error()));
  if constexpr (!std::is_void_v<T>)
    return std::move(*r);
}

} // namespace aeg

#define AEG_CONCAT_IMPL_(a, b) a##b
#define AEG_CONCAT_(a, b) AEG_CONCAT_IMPL_(a, b)

/// Evaluates `expr` (a `result`) and returns its error from the enclosing function (which
/// returns a `result` or is a coroutine returning one) when it failed.
#define AEG_TRY(expr)                                                                              \
  do {                                                                                             \
    if (auto aeg_try_ = (expr); !aeg_try_)                                                         \
      return ::tl::unexpected(std::move(aeg_try_.error()));                                        \
  } while (false)

/// Evaluates `expr` (a `result<T>`) and either returns its error from the enclosing function or
/// assigns its value to `lhs`, which may declare a variable: `AEG_TRY_ASSIGN(auto file,
/// gguf::file::open(path));`.
#define AEG_TRY_ASSIGN(lhs, expr) AEG_TRY_ASSIGN_IMPL_(AEG_CONCAT_(aeg_try_, __LINE__), lhs, expr)
#define AEG_TRY_ASSIGN_IMPL_(tmp, lhs, expr)                                                       \
  auto tmp = (expr);                                                                               \
  if (!tmp)                                                                                        \
    return ::tl::unexpected(std::move(tmp.error()));                                               \
  lhs = std::move(*tmp)
