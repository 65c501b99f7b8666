#pragma once

#include "coro/assert.hpp"
#include "coro/executor.hpp"

#include <concepts>
#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace aeg::coro {

/// A promise that knows the executor its coroutine runs on. Awaitables that complete from another
/// thread read it in `await_suspend` so that they resume the coroutine there.
template <class P>
concept executor_aware = requires(const P& p) {
  { p.exec() } -> std::convertible_to<const executor&>;
};

/// The executor of the coroutine `h`, or an inline executor when its promise has none.
template <class P>
executor executor_of(std::coroutine_handle<P> h) {
  if constexpr (executor_aware<P>) {
    if (const executor& e = h.promise().exec())
      return e;
  }
  return make_inline_executor();
}

template <class T = void>
class task;

namespace detail {

class promise_base {
public:
  std::suspend_always initial_suspend() noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      // Symmetric transfer: the awaiter resumes without growing the stack.
      if (auto c = h.promise().continuation_)
        return c;
      return std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }

  void unhandled_exception() noexcept { exception_ = std::current_exception(); }

  /// The executor this coroutine resumes on (inherited from its awaiter).
  const executor& exec() const noexcept { return exec_; }
  void set_exec(executor e) noexcept { exec_ = std::move(e); }
  void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }

protected:
  void rethrow_if_failed() {
    if (exception_)
      std::rethrow_exception(exception_);
  }

private:
  friend struct final_awaiter;
  executor exec_;
  std::coroutine_handle<> continuation_;
  std::exception_ptr exception_;
};

template <class T>
class promise final : public promise_base {
public:
  task<T> get_return_object() noexcept;

  template <class U>
  requires std::convertible_to<U&&, T>
  void return_value(U&& v) { value_.emplace(std::forward<U>(v)); }

  T take() {
    rethrow_if_failed();
    AEG_ASSERT(value_.has_value(), "task finished without a value");
    return std::move(*value_);
  }

private:
  std::optional<T> value_;
};

template <>
class promise<void> final : public promise_base {
public:
  task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() { rethrow_if_failed(); }
};

} // namespace detail

/// A lazy, move-only coroutine returning `T`. It starts when awaited, inherits the awaiter's
/// executor, resumes its awaiter by symmetric transfer, and rethrows its exception at `co_await`.
/// Destroying a task destroys its frame, suspended or not.
template <class T>
class [[nodiscard]] task {
public:
  using promise_type = detail::promise<T>;
  using handle_type = std::coroutine_handle<promise_type>;
  using value_type = T;

  task() noexcept = default;
  explicit task(handle_type h) noexcept : h_(h) {}
  task(task&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      destroy();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() { destroy(); }

  /// True when the task holds a coroutine.
  bool valid() const noexcept { return h_ != nullptr; }
  /// True when the coroutine ran to its end.
  bool done() const noexcept { return h_ && h_.done(); }

  struct awaiter {
    handle_type h;
    bool await_ready() const noexcept { return !h || h.done(); }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
      h.promise().set_continuation(parent);
      if constexpr (executor_aware<P>)
        h.promise().set_exec(parent.promise().exec());
      return h;
    }
    T await_resume() {
      AEG_ASSERT(h, "awaited an empty task");
      return h.promise().take();
    }
  };
  awaiter operator co_await() && noexcept { return awaiter{h_}; }
  awaiter operator co_await() & noexcept { return awaiter{h_}; }

  /// An awaiter that runs the task to completion but leaves its result in place (for combinators).
  struct ready_awaiter : awaiter {
    void await_resume() const noexcept {}
  };
  ready_awaiter when_ready() noexcept { return ready_awaiter{{h_}}; }

  /// The result of a finished task; rethrows its exception. For combinators.
  T take_result() { return h_.promise().take(); }

  /// Releases the coroutine handle to a new owner.
  handle_type release() noexcept { return std::exchange(h_, nullptr); }

private:
  void destroy() noexcept {
    if (h_)
      std::exchange(h_, nullptr).destroy();
  }
  handle_type h_;
};

namespace detail {

template <class T>
task<T> promise<T>::get_return_object() noexcept {
  return task<T>{std::coroutine_handle<promise<T>>::from_promise(*this)};
}

inline task<void> promise<void>::get_return_object() noexcept {
  return task<void>{std::coroutine_handle<promise<void>>::from_promise(*this)};
}

} // namespace detail

} // namespace aeg::coro
