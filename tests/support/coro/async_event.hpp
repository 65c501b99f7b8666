#pragma once

#include "coro/error.hpp"
#include "coro/task.hpp"
#include "coro/waiter.hpp"

#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <vector>

namespace aeg::coro {

/// A manual-reset event: `co_await ev.wait()` suspends until `set()`. Thread-safe. Each waiter
/// resumes on its own executor. The event must outlive its waiters.
class async_event {
public:
  explicit async_event(bool initially_set = false) : set_(initially_set) {}
  async_event(const async_event&) = delete;
  async_event& operator=(const async_event&) = delete;

  /// Sets the event and resumes every waiter.
  void set();
  /// Clears the event; later waits suspend again.
  void reset();
  bool is_set() const;

  class [[nodiscard]] awaiter {
  public:
    awaiter(async_event& ev, std::stop_token token) : ev_(ev), token_(std::move(token)) {}
    ~awaiter();

    bool await_ready() const { return ev_.is_set(); }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return suspend(std::make_shared<waiter>(h, executor_of(h)));
    }
    /// Throws `cancelled_exception` when the stop token fired first.
    void await_resume() const;

  private:
    bool suspend(std::shared_ptr<waiter> w);
    struct on_stop {
      std::shared_ptr<waiter> w;
      void operator()() const noexcept { w->fire(true); }
    };
    async_event& ev_;
    std::stop_token token_;
    std::shared_ptr<waiter> waiter_;
    std::optional<std::stop_callback<on_stop>> stop_;
  };

  /// Waits until the event is set, or `token` asks to stop (then throws `cancelled_exception`).
  awaiter wait(std::stop_token token = {}) { return awaiter{*this, std::move(token)}; }

private:
  mutable std::mutex mutex_;
  bool set_;
  std::vector<std::shared_ptr<waiter>> waiters_;
};

} // namespace aeg::coro
