#pragma once

#include "actors/instance.hpp"

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace aeg::apps {

/// One change of an instance's active model, timed from the start of a run.
struct timed_switch {
  std::size_t n = 0;            ///< its number among the instance's switches, from 0
  double at = 0;                ///< seconds from the run's start when it began (< 0: before)
  std::string from, to;         ///< the models (`from` empty: the instance's first model)
  double scale_up_seconds = -1; ///< until its weights were all in (-1: still coming in)
  bool prefetched = false;      ///< the weights were already copied in beside the last model
};

/// The switches of one instance during a run, merged from its stats taken now and then (an
/// instance keeps only its last 256 switches, so a long run is asked more than once).
struct instance_switches {
  std::string name;      ///< the pool's name of the instance ("d0/prefill#0")
  std::string active;    ///< its active model when last asked
  std::size_t total = 0; ///< every switch it made; those missing from `switches` were not seen
  std::vector<timed_switch> switches; ///< by number; a gap in `n` is switches not seen

  /// Adds what `stats`, taken `now` seconds after the run's start, tells: the switches not seen
  /// before (each timed `now - seconds_ago`), the scale-up times of known ones that were still
  /// coming in, the total and the active model. Stats taken in any order merge to the same.
  void merge(const actors::instance_stats& stats, double now);
  /// Switches made but not seen (dropped from the instance's log between two looks).
  std::size_t missing() const { return total - switches.size(); }
};

/// {"name", "active", "total", "switches": [{"n", "at", "from", "to", "scale_up_seconds",
/// "prefetched"}]}, times rounded to microseconds.
nlohmann::json to_json(const instance_switches& s);
/// The inverse of `to_json`; throws nlohmann::json::exception where a field has the wrong type.
instance_switches switches_from_json(const nlohmann::json& j);

} // namespace aeg::apps
