#pragma once

#include "coro/error.hpp"
#include "coro/task.hpp"
#include "coro/waiter.hpp"

#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace aeg::coro {

namespace detail {

template <class T>
struct completion_state {
  std::mutex mutex;
  std::optional<result<T>> outcome;
  std::shared_ptr<waiter> awaiting;

  bool set(result<T> r) {
    std::shared_ptr<waiter> w;
    {
      std::lock_guard lock(mutex);
      if (outcome)
        return false;
      outcome.emplace(std::move(r));
      w = std::move(awaiting);
    }
    if (w)
      w->fire();
    return true;
  }
};

// Fails the completion when the last completer goes away without completing, so that a dropped
// callback (a device shut down, an actor gone) ends the wait with an error instead of a hang.
template <class T>
struct completer_guard {
  explicit completer_guard(std::shared_ptr<completion_state<T>> s) : state(std::move(s)) {}
  completer_guard(const completer_guard&) = delete;
  completer_guard& operator=(const completer_guard&) = delete;
  std::shared_ptr<completion_state<T>> state;
  ~completer_guard() {
    state->set(fail(errc::cancelled, "the operation was dropped before it completed"));
  }
};

} // namespace detail

/// The producer side of a completion: copyable, callable from any thread; the first `set_value`
/// or `set_error` wins. If every copy is destroyed without either, the awaiter gets
/// `errc::cancelled`.
template <class T = void>
class completer {
public:
  explicit completer(std::shared_ptr<detail::completion_state<T>> s)
      : guard_(std::make_shared<detail::completer_guard<T>>(std::move(s))) {}

  /// Completes with a value. Returns false when already completed.
  template <class... Args>
  bool set_value(Args&&... args) const {
    if constexpr (std::is_void_v<T>)
      return guard_->state->set(result<T>{});
    else
      return guard_->state->set(result<T>{T(std::forward<Args>(args)...)});
  }

  /// Completes with an error. Returns false when already completed.
  bool set_error(error e) const { return guard_->state->set(tl::unexpected<error>(std::move(e))); }

private:
  std::shared_ptr<detail::completer_guard<T>> guard_;
};

/// The awaitable side of a completion: `co_await` yields the value (rethrowing an error as
/// `error_exception`) and resumes the coroutine on its own executor, whichever thread completed
/// it. Await it once. Destroying the awaiting frame first makes a later completion a no-op.
template <class T = void>
class [[nodiscard]] completion {
public:
  explicit completion(std::shared_ptr<detail::completion_state<T>> s) : state_(std::move(s)) {}
  completion(completion&&) noexcept = default;
  completion& operator=(completion&&) noexcept = default;
  ~completion() {
    if (waiter_)
      waiter_->abandon();
  }

  bool await_ready() const {
    std::lock_guard lock(state_->mutex);
    return state_->outcome.has_value();
  }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    auto w = std::make_shared<waiter>(h, executor_of(h));
    {
      std::lock_guard lock(state_->mutex);
      if (state_->outcome)
        return false;
      waiter_ = w;
      state_->awaiting = w;
    }
    return w->arm();
  }

  T await_resume() {
    std::lock_guard lock(state_->mutex);
    return value_or_throw(std::move(*state_->outcome));
  }

  /// The outcome as a value rather than an exception: `co_await std::move(c).as_result()`.
  class result_awaiter;
  result_awaiter as_result() && { return result_awaiter{std::move(*this)}; }

private:
  std::shared_ptr<detail::completion_state<T>> state_;
  std::shared_ptr<waiter> waiter_;
};

template <class T>
class completion<T>::result_awaiter {
public:
  explicit result_awaiter(completion c) : c_(std::move(c)) {}
  bool await_ready() const { return c_.await_ready(); }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return c_.await_suspend(h);
  }
  result<T> await_resume() {
    std::lock_guard lock(c_.state_->mutex);
    return std::move(*c_.state_->outcome);
  }

private:
  completion c_;
};

/// Makes a connected completer/completion pair.
template <class T = void>
std::pair<completer<T>, completion<T>> make_completion() {
  auto s = std::make_shared<detail::completion_state<T>>();
  return {completer<T>{s}, completion<T>{s}};
}

} // namespace aeg::coro
