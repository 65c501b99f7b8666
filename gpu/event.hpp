#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace aeg::coro {
class waiter;
}

namespace aeg::gpu {

/// A point in a stream's work. `stream::record(ev)` captures everything enqueued on that stream
/// so far; the event completes when that work has finished. An event never recorded is complete.
/// Re-recording moves the point forward (CUDA's semantics). When the device reports that the work
/// failed (a fault: a CUDA context's sticky error, an exception on a CPU stream), the event
/// completes failed, and stays failed: what it guards never happened, and `co_await` throws.
/// Thread-safe; cheap to query.
class event {
public:
  /// `native` is the backend's handle (a cudaEvent_t, or null for the cpu backend), released by
  /// `release_native` when the event goes.
  event(void* native = nullptr, void (*release_native)(void*) = nullptr);
  ~event();
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  /// True when the work captured by the latest record has finished (or failed).
  bool query() const;
  /// Why the work failed, once it has; empty while it has not.
  std::string failure() const;

  /// Calls `fn` once, when the work captured by the latest record has finished: at once on the
  /// calling thread if it already has, else on a driver thread (a CPU stream worker, a CUDA host
  /// function). `fn` must be quick and must not call into a device: post, do not compute.
  void on_complete(std::function<void()> fn);
  /// The same for a suspended coroutine's waiter: `w->fire()` then (no function to allocate:
  /// every device step is awaited this way).
  void on_complete(std::shared_ptr<coro::waiter> w);

  /// Backend side: starts a new record and returns its generation.
  std::uint64_t begin_record();
  /// Backend side: the work of generation `gen` has finished (driver thread).
  std::function<void()> completer(std::uint64_t gen) const;
  /// Backend side: the work of generation `gen` failed for the reason given (driver thread). Also
  /// completes it, so nothing waits forever.
  std::function<void(const std::string&)> failer(std::uint64_t gen) const;
  /// Backend side: a function that blocks until generation `gen` has finished and returns why it
  /// failed (empty: it did not). Only device worker threads, which emulate a stream stalled on an
  /// event, may run it.
  std::function<std::string()> staller(std::uint64_t gen) const;
  /// The latest generation recorded (0: never).
  std::uint64_t recorded() const;

  void* native() const noexcept { return native_; }

private:
  struct state;
  std::shared_ptr<state> state_;
  void* native_;
  void (*release_native_)(void*);
};

} // namespace aeg::gpu
