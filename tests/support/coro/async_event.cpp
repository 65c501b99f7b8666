#include "tests/support/coro/async_event.hpp"

namespace aeg::coro {

void async_event::set() {
  std::vector<std::shared_ptr<waiter>> ready;
  {
    std::lock_guard lock(mutex_);
    set_ = true;
    ready.swap(waiters_);
  }
  // Fire outside the lock: an inline executor resumes the waiter right here.
  for (auto& w : ready)
    w->fire();
}

void async_event::reset() {
  std::lock_guard lock(mutex_);
  set_ = false;
}

bool async_event::is_set() const {
  std::lock_guard lock(mutex_);
  return set_;
}

bool async_event::awaiter::suspend(std::shared_ptr<waiter> w) {
  {
    std::lock_guard lock(ev_.mutex_);
    if (ev_.set_)
      return false;
    waiter_ = w;
    ev_.waiters_.push_back(w);
  }
  if (token_.stop_possible())
    stop_.emplace(token_, on_stop{w}); // claims at once when stop was already requested
  return w->arm();                     // last touch of this awaiter: it may resume elsewhere now
}

void async_event::awaiter::await_resume() const {
  if (waiter_ && waiter_->cancelled())
    throw cancelled_exception("wait for event cancelled");
}

async_event::awaiter::~awaiter() {
  stop_.reset();
  if (waiter_)
    waiter_->abandon();
}

} // namespace aeg::coro
