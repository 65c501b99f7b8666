#pragma once

#include "actors/actor_executor.hpp"
#include "actors/atoms.hpp"
#include "coro/async_scope.hpp"
#include "coro/task.hpp"

#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>

#include <cstddef>
#include <memory>
#include <string>

namespace aeg::actors {

/// A CAF actor that runs C++20 coroutines. Each coroutine it spawns only ever runs inside this
/// actor's message handling: awaitables resume it by posting into the mailbox (`executor()`), so
/// actor state needs no lock. When the actor terminates, its suspended coroutines are destroyed,
/// never resumed, and completions that fire later are dropped.
///
/// A subclass builds its behavior with `with_coroutines(handlers...)`. A coroutine that ends in an
/// exception other than a cancellation terminates the actor with that error (nothing swallowed).
class coro_actor : public caf::event_based_actor {
public:
  explicit coro_actor(caf::actor_config& cfg);
  ~coro_actor() override;

  /// Executor that resumes coroutines inside this actor.
  const coro::executor& executor() const noexcept { return exec_; }

  /// Starts `t` as a coroutine of this actor; it runs now, until it first suspends. Call only
  /// from inside this actor (a handler or one of its coroutines).
  void spawn(coro::task<void> t);

  /// Coroutines spawned and not yet finished.
  std::size_t num_coroutines() const { return scope_->num_live(); }

  /// Fires the stop token the actor's coroutines may watch (soft cancellation).
  std::stop_token stop_token() const noexcept { return scope_->stop_token(); }

  void on_exit() override;

  /// Why the first of this actor's coroutines that failed did (empty: none did). The actor
  /// quits with it.
  const std::string& failure() const noexcept { return failure_; }

protected:
  /// The subclass's handlers plus the one that resumes coroutines.
  template <class... Handlers>
  caf::behavior with_coroutines(Handlers... handlers) {
    return caf::behavior{[](resume_atom, const resume_msg& m) { (*m.job)(); },
                         std::move(handlers)...};
  }

private:
  coro::executor exec_;
  std::unique_ptr<coro::async_scope> scope_;
  std::string failure_;
};

} // namespace aeg::actors
