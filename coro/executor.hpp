#pragma once

#include "coro/work.hpp"

#include <memory>

namespace aeg::coro {

/// Something that runs posted work later, in its own context: inline, a thread pool, one actor's
/// mailbox, an Asio io_context. A coroutine started on an executor always resumes on it.
class executor_base : public std::enable_shared_from_this<executor_base> {
public:
  virtual ~executor_base() = default;

  /// Queues `w` to run in this executor's context. Callable from any thread. An executor whose
  /// context is gone (an actor that exited, a pool that stopped) drops `w` without running it.
  virtual void post(work w) = 0;

  /// Queues the resumption of `h`.
  void post(std::coroutine_handle<> h) { post(work{h}); }
};

/// Shared handle to an executor; the awaitables that complete from other threads hold one.
using executor = std::shared_ptr<executor_base>;

/// Runs work immediately on the posting thread. For tests and code with no context of its own.
class inline_executor final : public executor_base {
public:
  using executor_base::post;
  void post(work w) override { w(); }
};

/// Returns a shared inline executor.
executor make_inline_executor();

} // namespace aeg::coro
