#include "tests/support/coro/thread_pool.hpp"

#include "coro/assert.hpp"

#include <concurrentqueue/blockingconcurrentqueue.h>

namespace aeg::coro {

struct thread_pool::queue {
  moodycamel::BlockingConcurrentQueue<work> items;
};

thread_pool::thread_pool(std::size_t num_threads) : queue_(std::make_unique<queue>()) {
  AEG_ASSERT(num_threads > 0, "a thread pool needs at least one thread");
  threads_.reserve(num_threads);
  for (std::size_t i = 0; i < num_threads; ++i)
    threads_.emplace_back([this] { run_worker(); });
}

thread_pool::~thread_pool() {
  stop();
}

void thread_pool::post(work w) {
  if (stopping_.load(std::memory_order_acquire))
    return;
  queue_->items.enqueue(std::move(w));
}

void thread_pool::stop() {
  if (stopping_.exchange(true, std::memory_order_acq_rel))
    return;
  // An empty work item wakes each worker; a worker seeing `stopping_` exits.
  for (std::size_t i = 0; i < threads_.size(); ++i)
    queue_->items.enqueue(work{});
  for (auto& t : threads_)
    if (t.joinable())
      t.join();
  work dropped;
  while (queue_->items.try_dequeue(dropped))
    dropped = work{};
}

void thread_pool::run_worker() {
  for (;;) {
    work w;
    queue_->items.wait_dequeue(w);
    if (!w) {
      if (stopping_.load(std::memory_order_acquire))
        return;
      continue;
    }
    w();
  }
}

} // namespace aeg::coro
