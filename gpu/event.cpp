#include "gpu/event.hpp"

#include "coro/waiter.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace aeg::gpu {

struct event::state {
  mutable std::mutex mutex; // over the callbacks, the failure and changes to `completed`
  mutable std::condition_variable changed;
  // Read without the lock: a query, asked several times per step, takes none.
  std::atomic<std::uint64_t> recorded{0};
  std::atomic<std::uint64_t> completed{0};
  std::atomic<bool> failed{false};
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

  void complete(std::uint64_t gen, const std::string* why = nullptr) {
    // Most often one callback is due: it is moved out without a list allocated for it.
    std::optional<callback> first;
    std::vector<callback> more;
    {
      std::lock_guard lock(mutex);
      if (why && failure.empty()) {
        failure = why->empty() ? "the device reported a failure" : *why;
        failed.store(true, std::memory_order_release);
      }
      if (gen > completed.load(std::memory_order_relaxed))
        completed.store(gen, std::memory_order_release);
      // Callbacks wait for the generation recorded when they were registered.
      const auto done = completed.load(std::memory_order_relaxed);
      auto keep = callbacks.begin();
      for (auto it = callbacks.begin(); it != callbacks.end(); ++it) {
        if (it->gen > done)
          *keep++ = std::move(*it);
        else if (!first)
          first.emplace(std::move(*it));
        else
          more.push_back(std::move(*it));
      }
      callbacks.erase(keep, callbacks.end());
    }
    changed.notify_all();
    if (first)
      (*first)();
    for (auto& fn : more)
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
  return state_->completed.load(std::memory_order_acquire) >=
         state_->recorded.load(std::memory_order_acquire);
}

void event::on_complete(std::function<void()> fn) {
  {
    std::lock_guard lock(state_->mutex);
    if (const auto gen = state_->recorded.load(std::memory_order_acquire);
        state_->completed.load(std::memory_order_relaxed) < gen) {
      state_->callbacks.push_back({gen, std::move(fn), nullptr});
      return;
    }
  }
  fn();
}

void event::on_complete(std::shared_ptr<coro::waiter> w) {
  {
    std::lock_guard lock(state_->mutex);
    if (const auto gen = state_->recorded.load(std::memory_order_acquire);
        state_->completed.load(std::memory_order_relaxed) < gen) {
      state_->callbacks.push_back({gen, {}, std::move(w)});
      return;
    }
  }
  w->fire();
}

std::uint64_t event::begin_record() {
  return state_->recorded.fetch_add(1, std::memory_order_acq_rel) + 1;
}

std::function<void()> event::completer(std::uint64_t gen) const {
  // Holds the state, not the event: the event may be destroyed before its work finishes.
  return [s = state_, gen] { s->complete(gen); };
}

std::function<void(const std::string&)> event::failer(std::uint64_t gen) const {
  return [s = state_, gen](const std::string& why) { s->complete(gen, &why); };
}

std::string event::failure() const {
  if (!state_->failed.load(std::memory_order_acquire))
    return {};
  std::lock_guard lock(state_->mutex);
  return state_->failure;
}

std::function<std::string()> event::staller(std::uint64_t gen) const {
  return [s = state_, gen] {
    std::unique_lock lock(s->mutex);
    s->changed.wait(lock, [&] { return s->completed.load(std::memory_order_relaxed) >= gen; });
    return s->failure;
  };
}

std::uint64_t event::recorded() const {
  return state_->recorded.load(std::memory_order_acquire);
}

} // namespace aeg::gpu
