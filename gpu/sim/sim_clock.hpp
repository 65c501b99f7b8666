#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <utility>

namespace aeg::gpu {

/// Virtual time for simulated devices: their work completes at points on it, and whoever drives
/// the simulation moves it forward (`advance_to`), never a thread's sleep. Callbacks due at the
/// same point run in the order they were scheduled, so a run is deterministic. Not thread-safe:
/// one thread (the simulation's) schedules and advances.
class sim_clock {
public:
  /// The clock type of the actors' clocks, so virtual points compare with theirs.
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  explicit sim_clock(time_point start = {}) noexcept : now_(start) {}

  time_point now() const noexcept { return now_; }

  /// Runs `fn` once the clock reaches `t` (at the next `advance_to` when `t` has passed).
  void at(time_point t, std::function<void()> fn) {
    queue_.emplace(std::pair{t, next_seq_++}, std::move(fn));
  }

  /// The earliest point something waits for, if anything does.
  std::optional<time_point> next() const {
    if (queue_.empty())
      return std::nullopt;
    return queue_.begin()->first.first;
  }

  /// Moves to `t` (never back) and runs every callback due by then, in time order, including
  /// those the callbacks schedule for points up to `t`. Returns how many ran.
  std::size_t advance_to(time_point t) {
    std::size_t ran = 0;
    while (!queue_.empty() && queue_.begin()->first.first <= t) {
      auto node = queue_.extract(queue_.begin());
      if (node.key().first > now_)
        now_ = node.key().first;
      node.mapped()();
      ++ran;
    }
    if (t > now_)
      now_ = t;
    return ran;
  }

  /// Callbacks waiting.
  std::size_t pending() const noexcept { return queue_.size(); }

private:
  time_point now_;
  std::uint64_t next_seq_ = 0;
  std::map<std::pair<time_point, std::uint64_t>, std::function<void()>> queue_;
};

} // namespace aeg::gpu
