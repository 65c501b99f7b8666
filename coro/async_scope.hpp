#pragma once

#include "coro/task.hpp"
#include "coro/waiter.hpp"

#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <stop_token>
#include <vector>

namespace aeg::coro {

/// Owns detached coroutines ("roots") so that none is orphaned. An owner (an actor, a session, a
/// test) spawns tasks into it and, before it goes away, either joins it or destroys what is left.
///
/// Soft cancellation: `request_stop()` fires `stop_token()`, which the roots' waits observe and end
/// with `cancelled_exception`. Hard cancellation: `destroy_suspended()` destroys every root frame;
/// call it only from the roots' executor context while none of them is running (an actor's exit).
class async_scope {
public:
  /// Called with the exception of a root that failed with anything but a cancellation. Without a
  /// handler the first such exception is kept and rethrown by `join()`.
  using error_handler = std::function<void(std::exception_ptr)>;

  explicit async_scope(error_handler on_error = {});
  async_scope(const async_scope&) = delete;
  async_scope& operator=(const async_scope&) = delete;
  /// Destroys any root still suspended (see `destroy_suspended`).
  ~async_scope();

  /// Starts `t` by posting it to `exec`.
  void spawn(executor exec, task<void> t);
  /// Starts `t` now on the calling thread, which must be in `exec`'s context; it runs until it
  /// first suspends.
  void spawn_now(executor exec, task<void> t);

  /// Number of roots spawned and not yet finished.
  std::size_t num_live() const;

  std::stop_token stop_token() const noexcept { return stop_.get_token(); }
  void request_stop() noexcept { stop_.request_stop(); }

  /// Destroys every root that has not finished. Their waits are abandoned: completions that
  /// fire later do nothing.
  void destroy_suspended();

  class [[nodiscard]] join_awaiter {
  public:
    explicit join_awaiter(async_scope& s) : scope_(s) {}
    ~join_awaiter();
    bool await_ready() const { return scope_.num_live() == 0; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return suspend(std::make_shared<waiter>(h, executor_of(h)));
    }
    /// Rethrows the first failure of a root when the scope has no error handler.
    void await_resume() const;

  private:
    bool suspend(std::shared_ptr<waiter> w);
    async_scope& scope_;
    std::shared_ptr<waiter> waiter_;
  };

  /// Waits until every root has finished.
  join_awaiter join() { return join_awaiter{*this}; }

private:
  struct root;
  using root_list = std::list<std::coroutine_handle<>>;

  root_list::iterator add(std::coroutine_handle<> h);
  void finish(root_list::iterator it, std::exception_ptr failure);
  static root run(task<void> t);
  std::coroutine_handle<> make_root(executor exec, task<void> t);

  mutable std::mutex mutex_;
  root_list roots_;
  std::vector<std::shared_ptr<waiter>> joiners_;
  std::exception_ptr first_failure_;
  error_handler on_error_;
  std::stop_source stop_;
};

} // namespace aeg::coro
