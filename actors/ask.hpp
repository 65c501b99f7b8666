#pragma once

#include "coro/completion.hpp"
#include "coro/error.hpp"
#include "coro/task.hpp"

#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <string>
#include <type_traits>

namespace aeg::actors {

/// Turns a CAF error into an Aegaeon error: a timeout stays a timeout, a receiver that is gone
/// is `unavailable`, an error an actor replied with keeps its own words, anything else carries
/// CAF's rendering.
error to_error(caf::actor_system& sys, const caf::error& e);

/// Sends `xs...` to `dest` (an actor handle, typed or not) as a request from `self` (a
/// coroutine actor) and waits, without blocking a thread, for a reply of type `T` (void for an
/// empty reply). Resumes inside `self`. Yields the reply, or an error: `errc::timeout` after
/// `timeout`, `errc::unavailable` when `dest` is gone, or the error `dest` replied with. Call
/// from a coroutine of `self`; with a typed `dest`, a message it does not take, or a reply of
/// another type, does not compile.
template <class T, class Self, class Handle, class... Ts>
coro::task<result<T>> ask(Self* self, Handle dest, std::chrono::milliseconds timeout, Ts... xs) {
  auto [done, fired] = coro::make_completion<T>();
  auto on_error = [done, sys = &self->system()](caf::error& e) {
    done.set_error(to_error(*sys, e));
  };
  if constexpr (std::is_void_v<T>) {
    self->request(dest, timeout, std::move(xs)...)
        .then([done] { done.set_value(); }, std::move(on_error));
  } else {
    self->request(dest, timeout, std::move(xs)...)
        .then([done](T& v) { done.set_value(std::move(v)); }, std::move(on_error));
  }
  co_return co_await std::move(fired).as_result();
}

} // namespace aeg::actors
