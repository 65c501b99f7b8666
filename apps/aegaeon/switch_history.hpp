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

/// An instance's step counters (`actors::instance_stats`); they only grow, so the latest look
/// holds them all.
struct step_totals {
  std::size_t steps = 0;            ///< forward steps run
  std::size_t repeated = 0;         ///< of them, run again without planning (a decision stood)
  double seconds = 0;               ///< their summed time, enqueue to the instance's hearing of it
  std::size_t decode_steps = 0;     ///< of them, those that only decoded
  std::size_t decode_sequences = 0; ///< the sequences of those, summed
  double decode_seconds = 0;        ///< the summed time of those

  step_totals& operator+=(const step_totals& o);
  /// `stats`' counters.
  static step_totals of(const actors::instance_stats& stats);
};

/// The switches of one instance during a run, merged from its stats taken now and then (an
/// instance keeps only its last 256 switches, so a long run is asked more than once).
struct instance_switches {
  std::string name;      ///< the pool's name of the instance ("d0/prefill#0")
  std::string active;    ///< its active model when last asked
  std::size_t total = 0; ///< every switch it made; those missing from `switches` were not seen
  std::vector<timed_switch> switches; ///< by number; a gap in `n` is switches not seen
  step_totals stepped;                ///< its step counters when last asked

  /// Adds what `stats`, taken `now` seconds after the run's start, tells: the switches not seen
  /// before (each timed `now - seconds_ago`), the scale-up times of known ones that were still
  /// coming in, the total and the active model. Stats taken in any order merge to the same.
  void merge(const actors::instance_stats& stats, double now);
  /// Switches made but not seen (dropped from the instance's log between two looks).
  std::size_t missing() const { return total - switches.size(); }
};

/// {"name", "active", "total", "switches": [{"n", "at", "from", "to", "scale_up_seconds",
/// "prefetched"}], "step_totals": {see `to_json(step_totals)`}}, times rounded to microseconds.
nlohmann::json to_json(const instance_switches& s);
/// {"steps", "repeated", "seconds", "decode_steps", "decode_sequences", "decode_seconds",
/// "decode_mean_seconds" (per decode step; 0 without one), "decode_mean_batch"}.
nlohmann::json to_json(const step_totals& t);
/// The inverse of `to_json`; throws nlohmann::json::exception where a field has the wrong type
/// or a step total is missing (runs written before steps were counted have none: zeros).
instance_switches switches_from_json(const nlohmann::json& j);

} // namespace aeg::apps
