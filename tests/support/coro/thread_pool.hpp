#pragma once

#include "coro/executor.hpp"

#include <atomic>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

namespace aeg::coro {

/// An executor backed by worker threads draining a lock-free queue (moodycamel). Work posted to
/// it may run on any of its threads, in any order across producers.
class thread_pool final : public executor_base {
public:
  /// Starts `num_threads` workers (at least 1). Create through `std::make_shared`.
  explicit thread_pool(std::size_t num_threads);
  ~thread_pool() override;

  using executor_base::post;
  void post(work w) override;

  /// Stops accepting work, lets the workers finish what they hold, and joins them. Work still
  /// queued is dropped without running. Idempotent; must not be called from a worker.
  void stop();

  std::size_t num_threads() const noexcept { return threads_.size(); }

private:
  struct queue;
  void run_worker();

  std::unique_ptr<queue> queue_;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;
};

} // namespace aeg::coro
