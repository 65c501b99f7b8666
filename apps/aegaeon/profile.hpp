#pragma once

#include <cstddef>
#include <string>

namespace CLI {
class App;
}

namespace aeg::apps {

/// Settings of `aegaeon profile`: measure a real device serving one model shape and write the
/// simulator's profile of it.
struct profile_options {
  std::string backend = "cpu";
  int ordinal = 0;
  std::string shape = "smollm2-135m";
  std::string name;             ///< the profile's name; empty: the device's
  std::size_t memory_mib = 768; ///< cpu: the device's memory; cuda: 0 for what is free
  std::size_t rounds = 3;       ///< timings per point (medians)
  std::string out_path;         ///< empty: profile-<backend>-<shape>.json
  /// A pool's run on this device (`aegaeon bench --in-process --json`) to take the fixed cost
  /// of a switch from; empty: the engine's scale-ups alone (no fixed cost).
  std::string switches_from;
};

CLI::App* add_profile_command(CLI::App& app, profile_options& o);

/// Measures scale-ups, KV swaps, prefill steps over prompt lengths and decode steps over batch
/// sizes and contexts; fits the step times as the simulator's profile wants them and writes it.
int run_profile(const profile_options& o);

} // namespace aeg::apps
