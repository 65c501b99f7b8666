#pragma once

#include <concepts>
#include <coroutine>
#include <memory>
#include <type_traits>
#include <utility>

namespace aeg::coro {

/// A move-only unit of work posted to an executor: either a coroutine to resume (no allocation)
/// or any callable `void()`. Destroying a `work` that never ran does not destroy its coroutine.
class work {
public:
  work() noexcept = default;

  /// Work that resumes `h`.
  explicit work(std::coroutine_handle<> h) noexcept : handle_(h) {}

  /// Work that calls `f` once.
  template <class F>
  requires(!std::same_as<std::remove_cvref_t<F>, work> &&
           std::invocable<std::decay_t<F>&>) explicit work(F&& f)
      : fn_(std::make_unique<holder<std::decay_t<F>>>(std::forward<F>(f))) {}

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

  explicit operator bool() const noexcept { return fn_ != nullptr || handle_ != nullptr; }

private:
  struct base {
    virtual ~base() = default;
    virtual void run() = 0;
  };
  template <class F>
  struct holder final : base {
    explicit holder(F f) : fn(std::move(f)) {}
    void run() override { fn(); }
    F fn;
  };

  std::coroutine_handle<> handle_;
  std::unique_ptr<base> fn_;
};

} // namespace aeg::coro
