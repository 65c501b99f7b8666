#pragma once

#include <concepts>
#include <coroutine>
#include <memory>
#include <type_traits>
#include <utility>

namespace aeg::coro {

/// A move-only unit of work posted to an executor: a coroutine to resume, something already
/// shared that knows how to run (a `runnable`: neither allocates) or any callable `void()`.
/// Destroying a `work` that never ran does not destroy its coroutine.
class work {
public:
  /// Shared work that runs itself; a waiter is one, so resuming through it allocates nothing.
  class runnable {
  public:
    virtual ~runnable() = default;
    virtual void run() = 0;
  };

  work() noexcept = default;

  /// Work that resumes `h`.
  explicit work(std::coroutine_handle<> h) noexcept : handle_(h) {}

  /// Work that runs `r` (not copied: posting it twice would run it twice).
  explicit work(std::shared_ptr<runnable> r) noexcept : fn_(std::move(r)) {}

  /// Work that calls `f` once.
  template <class F>
  requires(!std::same_as<std::remove_cvref_t<F>, work> &&
           !std::convertible_to<F, std::shared_ptr<runnable>> &&
           std::invocable<std::decay_t<F>&>) explicit work(F&& f)
      : fn_(std::make_shared<holder<std::decay_t<F>>>(std::forward<F>(f))) {}

  work(work&&) noexcept = default;
  work& operator=(work&&) noexcept = default;

  /// Runs the work. Must be called at most once.
  void operator()() {
    if (fn_) {
      auto fn = std::move(fn_);
      fn->run();
    } else if (auto h = std::exchange(handle_, nullptr)) {
      h.resume();
    }
  }

  /// The work as one shared runnable, for carriers that must be copyable (an actor message):
  /// allocates only for a coroutine handle. Empty work gives null.
  std::shared_ptr<runnable> share() && {
    if (fn_)
      return std::move(fn_);
    if (!handle_)
      return nullptr;
    return std::make_shared<resumer>(std::exchange(handle_, nullptr));
  }

  explicit operator bool() const noexcept { return fn_ != nullptr || handle_ != nullptr; }

private:
  template <class F>
  struct holder final : runnable {
    explicit holder(F f) : fn(std::move(f)) {}
    void run() override { fn(); }
    F fn;
  };
  struct resumer final : runnable {
    explicit resumer(std::coroutine_handle<> h) noexcept : h(h) {}
    void run() override {
      if (auto x = std::exchange(h, nullptr))
        x.resume();
    }
    std::coroutine_handle<> h;
  };

  std::coroutine_handle<> handle_;
  std::shared_ptr<runnable> fn_;
};

} // namespace aeg::coro
