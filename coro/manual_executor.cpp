#include "coro/manual_executor.hpp"

namespace aeg::coro {

void manual_executor::post(work w) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(w));
  }
  ready_.notify_one();
}

bool manual_executor::run_one() {
  work w;
  {
    std::lock_guard lock(mutex_);
    if (queue_.empty())
      return false;
    w = std::move(queue_.front());
    queue_.pop_front();
  }
  w();
  return true;
}

std::size_t manual_executor::run_all() {
  std::size_t n = 0;
  while (run_one())
    ++n;
  return n;
}

std::size_t manual_executor::size() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

} // namespace aeg::coro
