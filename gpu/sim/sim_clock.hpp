#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

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
    std::size_t slot = fns_.size();
    if (free_.empty()) {
      fns_.push_back(std::move(fn));
    } else {
      slot = free_.back();
      free_.pop_back();
      fns_[slot] = std::move(fn);
    }
    queue_.push_back({t, next_seq_++, slot});
    std::push_heap(queue_.begin(), queue_.end(), later);
  }

  /// The earliest point something waits for, if anything does.
  std::optional<time_point> next() const {
    if (queue_.empty())
      return std::nullopt;
    return queue_.front().at;
  }

  /// Moves to `t` (never back) and runs every callback due by then, in time order, including
  /// those the callbacks schedule for points up to `t`. Returns how many ran.
  std::size_t advance_to(time_point t) {
    std::size_t ran = 0;
    while (!queue_.empty() && queue_.front().at <= t) {
      std::pop_heap(queue_.begin(), queue_.end(), later);
      const auto due = queue_.back();
      queue_.pop_back();
      if (due.at > now_)
        now_ = due.at;
      auto fn = std::move(fns_[due.slot]);
      free_.push_back(due.slot);
      fn();
      ++ran;
    }
    if (t > now_)
      now_ = t;
    return ran;
  }

  /// Callbacks waiting.
  std::size_t pending() const noexcept { return queue_.size(); }

private:
  struct callback {
    time_point at;
    std::uint64_t seq; // the order of scheduling, among those due at the same point
    std::size_t slot;  // its function in fns_
  };
  // The heap's order: the earliest point first, and at one point the first scheduled.
  static bool later(const callback& a, const callback& b) noexcept {
    return a.at != b.at ? a.at > b.at : a.seq > b.seq;
  }

  time_point now_;
  std::uint64_t next_seq_ = 0;
  // A binary heap of small entries (no node allocated per callback, nothing large moved as it
  // sifts); the functions stay in their slots, which are reused.
  std::vector<callback> queue_;
  std::vector<std::function<void()>> fns_;
  std::vector<std::size_t> free_;
};

} // namespace aeg::gpu
