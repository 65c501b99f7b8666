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
///
/// A waiter starts *arming*: the awaiter publishes it (to a list, a stop callback, a device
/// event) and then calls `arm()` as the very last thing `await_suspend` does, through a local
/// copy of the shared pointer. A claim that wins while arming records the outcome without posting,
/// `arm()` returns false and the coroutine continues at once. After a successful `arm()` another
/// thread may already be resuming the frame, so the awaiter must not touch itself again.
class waiter : public std::enable_shared_from_this<waiter> {
public:
  waiter(std::coroutine_handle<> h, executor exec) noexcept : handle_(h), exec_(std::move(exec)) {}

  /// Wins the right to resume; `cancelled` records why. False when another claim won or the
  /// frame is gone. Thread-safe.
  bool claim(bool cancelled = false) {
    std::lock_guard lock(mutex_);
    if (state_ == state::arming)
      state_ = state::claimed_early;
    else if (state_ == state::armed)
      state_ = state::claimed;
    else
      return false;
    cancelled_ = cancelled;
    return true;
  }

  /// Ends arming: true when the coroutine stays suspended, false when a claim already won (the
  /// awaiter then returns false from `await_suspend` and the coroutine goes on without a post).
  bool arm() {
    std::lock_guard lock(mutex_);
    if (state_ != state::arming)
      return false;
    state_ = state::armed;
    return true;
  }

  /// Posts the resumption to the coroutine's executor; call once after a successful `claim`.
  /// Does nothing when the claim won while arming (the coroutine never suspended).
  void post() {
    {
      std::lock_guard lock(mutex_);
      if (state_ != state::claimed)
        return;
    }
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
  enum class state { arming, armed, claimed_early, claimed, abandoned };

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
  state state_ = state::arming;
  bool cancelled_ = false;
};

} // namespace aeg::coro
