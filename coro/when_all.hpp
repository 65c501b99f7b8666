#pragma once

#include "coro/task.hpp"

#include <atomic>
#include <coroutine>
#include <exception>
#include <tuple>
#include <variant>
#include <vector>

namespace aeg::coro {

namespace detail {

struct when_all_counter {
  explicit when_all_counter(std::size_t n) : remaining(n + 1) {}
  std::atomic<std::size_t> remaining;
  std::coroutine_handle<> parent;
};

// A frame per child: awaits it, then the last child to finish resumes the parent.
class when_all_child {
public:
  struct promise_type {
    when_all_counter* counter = nullptr;
    executor exec_;
    const executor& exec() const noexcept { return exec_; }
    when_all_child get_return_object() noexcept {
      return when_all_child{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct final_awaiter {
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        auto* c = h.promise().counter;
        if (c->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1)
          return c->parent;
        return std::noop_coroutine();
      }
      void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept {} // the child task keeps its own exception
  };
  using handle = std::coroutine_handle<promise_type>;

  explicit when_all_child(handle h) noexcept : h_(h) {}
  when_all_child(when_all_child&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  ~when_all_child() {
    if (h_)
      h_.destroy();
  }
  void start(when_all_counter& c, executor exec) {
    h_.promise().counter = &c;
    h_.promise().exec_ = std::move(exec);
    h_.resume();
  }

private:
  handle h_;
};

template <class T>
when_all_child make_when_all_child(task<T>& t) {
  co_await t.when_ready();
}

// Runs every child on the awaiting coroutine's executor; resumes it when the last one finishes.
class when_all_awaiter {
public:
  explicit when_all_awaiter(std::vector<when_all_child> children)
      : children_(std::move(children)), counter_(children_.size()) {}
  bool await_ready() const noexcept { return children_.empty(); }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    counter_.parent = h;
    auto exec = executor_of(h);
    for (auto& c : children_)
      c.start(counter_, exec);
    return counter_.remaining.fetch_sub(1, std::memory_order_acq_rel) != 1;
  }
  void await_resume() const noexcept {}

private:
  std::vector<when_all_child> children_;
  when_all_counter counter_;
};

template <class T>
using value_or_monostate = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
value_or_monostate<T> take_or_monostate(task<T>& t) {
  if constexpr (std::is_void_v<T>) {
    t.take_result();
    return {};
  } else {
    return t.take_result();
  }
}

} // namespace detail

/// Runs every task concurrently on the awaiter's executor and yields their values in order
/// once all have finished. If any failed, rethrows the first failure (in argument order) after
/// all have finished.
template <class T>
task<std::vector<T>> when_all(std::vector<task<T>> tasks) {
  std::vector<detail::when_all_child> children;
  children.reserve(tasks.size());
  for (auto& t : tasks)
    children.push_back(detail::make_when_all_child(t));
  co_await detail::when_all_awaiter{std::move(children)};
  std::vector<T> out;
  out.reserve(tasks.size());
  for (auto& t : tasks)
    out.push_back(t.take_result());
  co_return out;
}

/// `when_all` for tasks returning nothing.
inline task<void> when_all(std::vector<task<void>> tasks) {
  std::vector<detail::when_all_child> children;
  children.reserve(tasks.size());
  for (auto& t : tasks)
    children.push_back(detail::make_when_all_child(t));
  co_await detail::when_all_awaiter{std::move(children)};
  for (auto& t : tasks)
    t.take_result();
}

/// Variadic `when_all`: a tuple of the values, `std::monostate` for `task<void>`.
template <class... Ts>
task<std::tuple<detail::value_or_monostate<Ts>...>> when_all(task<Ts>... tasks) {
  std::vector<detail::when_all_child> children;
  children.reserve(sizeof...(Ts));
  (children.push_back(detail::make_when_all_child(tasks)), ...);
  co_await detail::when_all_awaiter{std::move(children)};
  co_return std::tuple<detail::value_or_monostate<Ts>...>{detail::take_or_monostate(tasks)...};
}

} // namespace aeg::coro
