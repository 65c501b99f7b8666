#include "gpu/event.hpp"

#include "coro/waiter.hpp"

#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

namespace aeg::gpu {

struct event::state {
  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::uint64_t recorded = 0;
  std::uint64_t completed = 0;
  // What waits for generation `gen`: a function or a coroutine's waiter.
  struct callback {
    std::uint64_t gen;
    std::function<void()> fn;
    std::shared_ptr<coro::waiter> waiter;
    void operator()() {
      if (waiter)
        waiter->fire();
      else
        fn();
    }
  };
  std::vector<callback> callbacks;
  std::string failure; // the first failure reported; sticky

  void complete(std::uint64_t gen, const std::string* failed = nullptr) {
    std::vector<callback> ready;
    {
      std::lock_guard lock(mutex);
      if (failed && failure.empty())
        failure = failed->empty() ? "the device reported a failure" : *failed;
      if (gen > completed)
        completed = gen;
      // Callbacks wait for the generation recorded when they were registered.
      auto keep = callbacks.begin();
      for (auto it = callbacks.begin(); it != callbacks.end(); ++it) {
        if (it->gen <= completed)
          ready.push_back(std::move(*it));
        else
          *keep++ = std::move(*it);
      }
      callbacks.erase(keep, callbacks.end());
    }
    changed.notify_all();
    for (auto& fn : ready)
      fn();
  }
};

event::event(void* native, void (*release_native)(void*))
    : state_(std::make_shared<state>()), native_(native), release_native_(release_native) {}

event::~event() {
  if (native_ && release_native_)
    release_native_(native_);
}

bool event::query() const {
  std::lock_guard lock(state_->mutex);
  return state_->completed >= state_->recorded;
}

void event::on_complete(std::function<void()> fn) {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->completed < state_->recorded) {
      state_->callbacks.push_back({state_->recorded, std::move(fn), nullptr});
      return;
    }
  }
  fn();
}

void event::on_complete(std::shared_ptr<coro::waiter> w) {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->completed < state_->recorded) {
      state_->callbacks.push_back({state_->recorded, {}, std::move(w)});
      return;
    }
  }
  w->fire();
}

std::uint64_t event::begin_record() {
  std::lock_guard lock(state_->mutex);
  return ++state_->recorded;
}

std::function<void()> event::completer(std::uint64_t gen) const {
  // Holds the state, not the event: the event may be destroyed before its work finishes.
  return [s = state_, gen] { s->complete(gen); };
}

std::function<void(const std::string&)> event::failer(std::uint64_t gen) const {
  return [s = state_, gen](const std::string& why) { s->complete(gen, &why); };
}

std::string event::failure() const {
  std::lock_guard lock(state_->mutex);
  return state_->failure;
}

std::function<std::string()> event::staller(std::uint64_t gen) const {
  return [s = state_, gen] {
    std::unique_lock lock(s->mutex);
    s->changed.wait(lock, [&] { return s->completed >= gen; });
    return s->failure;
  };
}

std::uint64_t event::recorded() const {
  std::lock_guard lock(state_->mutex);
  return state_->recorded;
}

} // namespace aeg::gpu
