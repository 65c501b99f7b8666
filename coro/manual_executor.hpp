#pragma once

#include "coro/executor.hpp"

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

namespace aeg::coro {

/// An executor whose work runs only when its owner asks: `run_one`, `run_all`, or
/// `run_until`, which blocks the calling thread between items (for tests and `sync_wait`).
/// `post` is thread-safe; everything else belongs to the one thread that drives it.
class manual_executor final : public executor_base {
public:
  using executor_base::post;
  void post(work w) override;

  /// Runs the oldest queued item; false when there was none.
  bool run_one();
  /// Runs items until the queue is empty, including items they post. Returns how many ran.
  std::size_t run_all();
  /// Runs items, waiting for more when the queue is empty, until `done()` is true.
  template <class Predicate>
  void run_until(Predicate done) {
    while (!done()) {
      work w;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return !queue_.empty(); });
        w = std::move(queue_.front());
        queue_.pop_front();
      }
      w();
    }
  }
  /// Items waiting to run.
  std::size_t size() const;

private:
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<work> queue_;
};

} // namespace aeg::coro
