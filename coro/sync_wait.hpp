#pragma once

#include "coro/manual_executor.hpp"
#include "coro/task.hpp"

#include <atomic>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>

namespace aeg::coro {

namespace detail {

struct sync_root {
  struct promise_type {
    executor exec_;
    std::shared_ptr<manual_executor> loop;
    std::atomic<bool>* done = nullptr;
    const executor& exec() const noexcept { return exec_; }
    sync_root get_return_object() noexcept {
      return sync_root{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    // Signals only once the frame is suspended: the waiting thread may destroy it right after.
    struct final_awaiter {
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> h) const noexcept {
        auto loop = h.promise().loop; // a strong reference that outlives the frame
        h.promise().done->store(true, std::memory_order_release);
        loop->post(work{[] {}}); // wakes the loop when this ran on another thread
      }
      void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> handle;
};

template <class T>
struct sync_box {
  std::optional<T> value;
};
template <>
struct sync_box<void> {};

template <class T>
sync_root sync_run(task<T> t, sync_box<T>* box, std::exception_ptr* failure) {
  try {
    if constexpr (std::is_void_v<T>)
      co_await std::move(t);
    else
      box->value.emplace(co_await std::move(t));
  } catch (...) {
    *failure = std::current_exception();
  }
}

} // namespace detail

/// Runs `t` on the calling thread until it finishes and returns its value or rethrows its
/// exception. Work the task posts runs here, between waits. Blocks: for tests and `main` only.
template <class T>
T sync_wait(task<T> t) {
  auto loop = std::make_shared<manual_executor>();
  detail::sync_box<T> box;
  std::exception_ptr failure;
  std::atomic<bool> done{false};
  auto root = detail::sync_run(std::move(t), &box, &failure);
  root.handle.promise().exec_ = loop;
  root.handle.promise().loop = loop;
  root.handle.promise().done = &done;
  loop->post(root.handle);
  loop->run_until([&] { return done.load(std::memory_order_acquire); });
  root.handle.destroy();
  if (failure)
    std::rethrow_exception(failure);
  if constexpr (!std::is_void_v<T>)
    return std::move(*box.value);
}

} // namespace aeg::coro
