#pragma once

#include "coro/executor.hpp"

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <memory>

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
///
/// Its whole state is one atomic word (every step of a device waits on one: no lock, and posting
/// it allocates nothing, as it is its own work).
class waiter : public work::runnable, public std::enable_shared_from_this<waiter> {
public:
  waiter(std::coroutine_handle<> h, executor exec) noexcept : handle_(h), exec_(std::move(exec)) {}

  /// Wins the right to resume; `cancelled` records why. False when another claim won or the
  /// frame is gone. Thread-safe.
  bool claim(bool cancelled = false) {
    const std::uint8_t why = cancelled ? cancelled_bit : 0;
    auto s = state_.load(std::memory_order_acquire);
    for (;;) {
      if ((s & abandoned_bit) != 0 || (phase(s) != arming && phase(s) != armed))
        return false;
      const std::uint8_t to = (phase(s) == arming ? claimed_early : claimed) | why;
      if (state_.compare_exchange_weak(s, to, std::memory_order_acq_rel, std::memory_order_acquire))
        return true;
    }
  }

  /// Ends arming: true when the coroutine stays suspended, false when a claim already won (the
  /// awaiter then returns false from `await_suspend` and the coroutine goes on without a post).
  bool arm() {
    std::uint8_t s = arming;
    return state_.compare_exchange_strong(s, armed, std::memory_order_acq_rel,
                                          std::memory_order_acquire);
  }

  /// Posts the resumption to the coroutine's executor; call once after a successful `claim`.
  /// Does nothing when the claim won while arming (the coroutine never suspended).
  void post() {
    const auto s = state_.load(std::memory_order_acquire);
    if ((s & abandoned_bit) != 0 || phase(s) != claimed)
      return;
    exec_->post(work{std::static_pointer_cast<work::runnable>(shared_from_this())});
  }

  /// `claim` then `post`. Returns whether this call won.
  bool fire(bool cancelled = false) {
    if (!claim(cancelled))
      return false;
    post();
    return true;
  }

  /// Called by the awaiter's destructor: the frame is going away, never resume it.
  void abandon() noexcept { state_.fetch_or(abandoned_bit, std::memory_order_acq_rel); }

  /// Whether the winning claim was a cancellation.
  bool cancelled() const { return (state_.load(std::memory_order_acquire) & cancelled_bit) != 0; }

private:
  // The phase in the low bits, then why a claim won and whether the frame is gone.
  static constexpr std::uint8_t arming = 0, armed = 1, claimed_early = 2, claimed = 3;
  static constexpr std::uint8_t phase_bits = 3, cancelled_bit = 4, resumed_bit = 8,
                                abandoned_bit = 16;
  static std::uint8_t phase(std::uint8_t s) noexcept { return s & phase_bits; }

  // The posted work: resumes the frame once, unless it is gone.
  void run() override {
    const auto s = state_.fetch_or(resumed_bit, std::memory_order_acq_rel);
    if ((s & (abandoned_bit | resumed_bit)) == 0)
      handle_.resume();
  }

  const std::coroutine_handle<> handle_;
  const executor exec_;
  std::atomic<std::uint8_t> state_{arming};
};

} // namespace aeg::coro
