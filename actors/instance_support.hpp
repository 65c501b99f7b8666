#pragma once

// The parts of an instance actor that need no actor: making its engine, reading the engine's
// counters into its stats, and the log of its model switches.

#include "actors/instance.hpp"
#include "models/engine.hpp"

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace aeg::actors {

/// The engine of an instance serving `models` with `options` on `dev`; makes the instance's own
/// host KV pool when `host_kv` is null. Throws `error_exception` with the reason.
std::unique_ptr<models::engine> make_instance_engine(const std::shared_ptr<gpu::device>& dev,
                                                     std::shared_ptr<gpu::kv_pool>& host_kv,
                                                     const std::vector<served_model>& models,
                                                     const instance_options& options);

/// Copies the engine's KV and transfer counters into `s` (after reclaiming finished transfers).
void add_engine_stats(instance_stats& s, models::engine& engine);

/// The last `capacity` switches of an instance, for its stats: when each began (on the actor
/// clock), from and to which model, and how long the weights took to come in.
class switch_log {
public:
  using time_point = std::chrono::steady_clock::time_point;
  static constexpr std::size_t capacity = 256;

  /// Records a switch that begins at `at`; returns its number for `scaled_up`.
  std::size_t began(time_point at, std::string from, std::string to, bool prefetched);
  /// The switch numbered `n` has its weights all in after `seconds` (ignored once dropped).
  void scaled_up(std::size_t n, double seconds);
  /// The switches kept, oldest first, with their ages at `now`.
  std::vector<switch_record> report(time_point now) const;

private:
  struct entry {
    time_point at;
    switch_record record;
  };
  std::deque<entry> entries_;
  std::size_t first_ = 0; // the number of entries_.front()
};

} // namespace aeg::actors
