#pragma once

#include "coro/executor.hpp"

#include <coroutine>
#include <memory>
#include <mutex>

namespace aeg::coro {

/// One suspended coroutine waiting for one event, shared between the awaiter (in the coroutine's
/// frame) and whoever completes it (any thread). Exactly one `claim` wins; the winner's `post`
/// resumes the coroutine on its executor. When the frame is destroyed first, the awaiter calls
/// `abandon` and a later resumption does nothing, so a late completion never touches freed memory.
class waiter : public std::enable_shared_from_this<waiter> {
public:
  waiter(std::coroutine_handle<> h, executor exec) noexcept : handle_(h), exec_(std::move(exec)) {}

  /// Wins the right to resume; `cancelled` records why. False when another claim won or the
  /// frame is gone. Thread-safe.
  bool claim(bool cancelled = false) {
    std::lock_guard lock(mutex_);
    if (state_ != state::armed)
      return false;
    state_ = state::claimed;
    cancelled_ = cancelled;
    return true;
  }

  /// Posts the resumption to the coroutine's executor; call once after a successful `claim`.
  void post() {
    exec_->post(work{[self = shared_from_this()] { self->resume(); }});
  }

  /// `claim` then `post`. Returns whether this call won.
  bool fire(bool cancelled = false) {
    if (!claim(cancelled))
      return false;
    post();
    return true;
  }

  /// Called by the awaiter's destructor: the frame is going away, never resume it.
  void abandon() noexcept {
    std::lock_guard lock(mutex_);
    state_ = state::abandoned;
    handle_ = nullptr;
  }

  /// Whether the winning claim was a cancellation.
  bool cancelled() const {
    std::lock_guard lock(mutex_);
    return cancelled_;
  }

private:
  enum class state { armed, claimed, abandoned };

  void resume() {
    std::coroutine_handle<> h;
    {
      std::lock_guard lock(mutex_);
      if (state_ == state::abandoned)
        return;
      h = std::exchange(handle_, nullptr);
    }
    if (h)
      h.resume();
  }

  mutable std::mutex mutex_;
  std::coroutine_handle<> handle_;
  executor exec_;
  state state_ = state::armed;
  bool cancelled_ = false;
};

} // namespace aeg::coro
