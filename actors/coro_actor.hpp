#pragma once

#include "actors/actor_executor.hpp"
#include "actors/atoms.hpp"
#include "coro/async_scope.hpp"
#include "coro/task.hpp"

#include <caf/actor_cast.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/sec.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>

namespace aeg::actors {

/// The coroutine machinery of one actor: the executor that resumes coroutines through its
/// mailbox and the scope that owns them. Shared by untyped and typed coroutine actors.
class coro_host {
public:
  /// For the actor of `self`; `on_failure` gets the words of the first coroutine that fails with
  /// anything but a cancellation (the actor then quits).
  coro_host(caf::actor_control_block* self, std::function<void(const std::string&)> on_failure);
  ~coro_host();
  coro_host(const coro_host&) = delete;
  coro_host& operator=(const coro_host&) = delete;

  const coro::executor& executor() const noexcept { return exec_; }
  void spawn(coro::task<void> t);
  std::size_t num_coroutines() const { return scope_->num_live(); }
  std::stop_token stop_token() const noexcept { return scope_->stop_token(); }
  /// Fires the stop token and destroys every suspended coroutine (the actor is exiting).
  void shutdown();
  const std::string& failure() const noexcept { return failure_; }

private:
  coro::executor exec_;
  std::unique_ptr<coro::async_scope> scope_;
  std::string failure_;
};

/// A CAF actor that runs C++20 coroutines, on `Base` (`caf::event_based_actor`, or a
/// `caf::typed_event_based_actor` whose signatures include `reacts_to<resume_atom, resume_msg>`:
/// see `typed_coro_actor`). Each coroutine it spawns only ever runs inside this actor's message
/// handling: awaitables resume it by posting into the mailbox (`executor()`), so actor state
/// needs no lock. When the actor terminates, its suspended coroutines are destroyed, never
/// resumed, and completions that fire later are dropped.
///
/// A subclass builds its behavior with `with_coroutines(handlers...)`. A coroutine that ends in an
/// exception other than a cancellation terminates the actor with that error (nothing swallowed).
template <class Base>
class basic_coro_actor : public Base {
public:
  explicit basic_coro_actor(caf::actor_config& cfg)
      : Base(cfg), host_(caf::actor_control_block::from(this), [this](const std::string& why) {
          this->quit(caf::make_error(caf::sec::runtime_error, "a coroutine of actor " +
                                                                  std::to_string(this->id()) +
                                                                  " failed: " + why));
        }) {}

  /// Executor that resumes coroutines inside this actor.
  const coro::executor& executor() const noexcept { return host_.executor(); }

  /// Starts `t` as a coroutine of this actor; it runs now, until it first suspends. Call only
  /// from inside this actor (a handler or one of its coroutines).
  void spawn(coro::task<void> t) { host_.spawn(std::move(t)); }

  /// An awaitable that resumes the coroutine through the mailbox: messages that arrived
  /// meanwhile are handled first.
  auto yield() const noexcept {
    struct awaiter {
      coro::executor exec;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) const { exec->post(h); }
      void await_resume() const noexcept {}
    };
    return awaiter{executor()};
  }

  /// Coroutines spawned and not yet finished.
  std::size_t num_coroutines() const { return host_.num_coroutines(); }

  /// Fires the stop token the actor's coroutines may watch (soft cancellation).
  std::stop_token stop_token() const noexcept { return host_.stop_token(); }

  void on_exit() override {
    // Runs inside the actor after its last handler: no coroutine of ours is running, so every
    // one left is suspended and can be destroyed. Their waiters are abandoned, so completions
    // that fire later resume nothing.
    host_.shutdown();
    Base::on_exit();
  }

  /// This actor's own handle, typed: it converts to any handle whose messages it takes.
  auto handle() requires requires { typename Base::actor_hdl; }
  { return caf::actor_cast<typename Base::actor_hdl>(this); }

  /// Why the first of this actor's coroutines that failed did (empty: none did). The actor
  /// quits with it.
  const std::string& failure() const noexcept { return host_.failure(); }

protected:
  /// The subclass's handlers plus the one that resumes coroutines.
  template <class... Handlers>
  typename Base::behavior_type with_coroutines(Handlers... handlers) {
    return {[](resume_atom, const resume_msg& m) {
              if (m.job)
                m.job->run();
            },
            std::move(handlers)...};
  }

private:
  coro_host host_;
};

/// An untyped coroutine actor.
using coro_actor = basic_coro_actor<caf::event_based_actor>;

/// The base of a coroutine actor whose handle is `Handle` (a `caf::typed_actor`): its messages
/// plus the one that resumes its coroutines. Spawning it gives a handle that converts to `Handle`,
/// so what others may send it is checked when they compile.
template <class Handle>
using typed_coro_actor = basic_coro_actor<
    typename Handle::template extend<caf::reacts_to<resume_atom, resume_msg>>::base>;

} // namespace aeg::actors
