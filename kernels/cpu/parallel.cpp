#include "kernels/cpu/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace aeg::kernels::cpu {

namespace {

void relax() noexcept {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// A job: chunks are claimed through an atomic counter by the caller and the helpers alike.
struct job {
  const std::function<void(std::size_t, std::size_t)>* fn = nullptr;
  std::size_t n = 0;
  std::size_t chunk = 1;
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> done{0};

  // Runs chunks until none is left; returns how many items this thread ran.
  void work() {
    for (;;) {
      const std::size_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
      if (begin >= n)
        return;
      const std::size_t end = std::min(n, begin + chunk);
      (*fn)(begin, end);
      done.fetch_add(end - begin, std::memory_order_acq_rel);
    }
  }
};

// Helpers spin briefly between jobs: a forward pass issues hundreds of parallel ops back to
// back, and waking a sleeping thread for each would cost more than the ops themselves.
class pool {
public:
  pool() {
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 1; i < hw; ++i)
      helpers_.emplace_back([this] { run(); });
  }
  ~pool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : helpers_)
      t.join();
  }

  std::size_t num_threads() const noexcept { return helpers_.size() + 1; }

  void run_job(std::size_t n, std::size_t grain,
               const std::function<void(std::size_t, std::size_t)>& fn) {
    const std::size_t threads = num_threads();
    std::unique_lock owner(busy_, std::try_to_lock);
    if (!owner.owns_lock() || threads == 1 || n <= grain) {
      fn(0, n);
      return;
    }
    job j;
    j.fn = &fn;
    j.n = n;
    // A few chunks per thread balance uneven chunks without much claiming traffic.
    j.chunk = std::max(grain, (n + threads * 4 - 1) / (threads * 4));
    {
      std::lock_guard lock(mutex_);
      current_ = &j;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    j.work();
    while (j.done.load(std::memory_order_acquire) < n)
      relax();
    // Helpers may still hold `current_`; wait until none is inside the job before it dies.
    {
      std::lock_guard lock(mutex_);
      current_ = nullptr;
    }
    while (inside_.load(std::memory_order_acquire) != 0)
      relax();
  }

private:
  void run() {
    std::uint64_t seen = 0;
    for (;;) {
      // Spin a little for the next job (without the lock), then sleep.
      const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
      while (generation_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < spin_until)
        for (int i = 0; i < 32; ++i)
          relax();
      job* j = nullptr;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_.load() != seen; });
        if (stopping_)
          return;
        seen = generation_.load();
        j = current_;
        if (j == nullptr) // that job already finished
          continue;
        inside_.fetch_add(1, std::memory_order_acq_rel);
      }
      j->work();
      inside_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::mutex busy_; // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  job* current_ = nullptr;                   // guarded by mutex_
  std::atomic<std::uint64_t> generation_{0}; // written under mutex_, read by spinning helpers
  std::atomic<int> inside_{0};
  bool stopping_ = false;
  std::vector<std::thread> helpers_;
};

pool& the_pool() {
  static pool p;
  return p;
}

} // namespace

void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn) {
  if (n == 0)
    return;
  the_pool().run_job(n, std::max<std::size_t>(1, grain), fn);
}

std::size_t num_compute_threads() noexcept {
  return the_pool().num_threads();
}

} // namespace aeg::kernels::cpu
