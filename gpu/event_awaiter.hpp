#pragma once

#include "coro/error.hpp"
#include "coro/task.hpp"
#include "coro/waiter.hpp"
#include "gpu/event.hpp"

#include <memory>

namespace aeg::gpu {

/// `co_await ev`: suspends until the work captured by `ev`'s latest record has finished, then
/// resumes the coroutine on its own executor (for an actor: inside the actor, through its
/// mailbox). No thread blocks. If the frame is destroyed first, the completion does nothing.
/// Work the device failed resumes the coroutine with an exception saying why.
class [[nodiscard]] event_awaiter {
public:
  explicit event_awaiter(event& ev) : ev_(ev) {}
  ~event_awaiter() {
    if (waiter_)
      waiter_->abandon();
  }
  bool await_ready() const { return ev_.query(); }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    auto w = std::make_shared<coro::waiter>(h, coro::executor_of(h));
    waiter_ = w;
    ev_.on_complete(w); // fires here when the work finished meanwhile
    return w->arm();
  }
  /// Throws `error_exception` (errc::device_error) when the device failed the work.
  void await_resume() const {
    if (auto why = ev_.failure(); !why.empty())
      throw error_exception(error{errc::device_error, why});
  }

private:
  event& ev_;
  std::shared_ptr<coro::waiter> waiter_;
};

inline event_awaiter operator co_await(event& ev) {
  return event_awaiter{ev};
}

} // namespace aeg::gpu
