#pragma once

#include "actors/instance.hpp"
#include "actors/pool_metrics.hpp"
#include "actors/topology.hpp"
#include "actors/trace_request.hpp"
#include "coro/error.hpp"

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace aeg::actors {

/// How a simulation runs.
struct simulation_options {
  /// Called now and then with the simulated seconds so far and the requests ended of all.
  std::function<void(double simulated_seconds, std::size_t ended, std::size_t total)> progress;
  /// Keep every token's and end's time, id and index in `simulation_report::events`.
  bool log_events = false;
};

/// What a simulation found.
struct simulation_report {
  pool_metrics metrics;                  ///< every finished request, with its token times
  std::vector<instance_stats> instances; ///< in the pool's instance order
  std::size_t rejected = 0;              ///< refused by the proxy (overload, unknown model)
  std::string first_rejection;
  double simulated_seconds = 0;    ///< from the start to the last event
  std::size_t messages = 0;        ///< actor messages handled
  std::vector<std::string> events; ///< with log_events: "12.345678 token 7 #3", in order
};

/// Runs the pool of `spec` in virtual time: its proxy, instances, request actors and policies
/// unchanged, on CAF's deterministic test scheduler; its devices "sim" ones whose work completes
/// after the costs of `spec.sim_profile` (required) on one virtual clock, which jumps to the next
/// event whenever no actor has a message. `arrivals` are submitted at their times. Same spec and
/// arrivals, same report, event for event. Errors: a device that is not "sim", a pool that
/// cannot start, a run that stops advancing with requests unfinished.
result<simulation_report> simulate(pool_spec spec, const std::vector<trace_request>& arrivals,
                                   const simulation_options& options = {});

} // namespace aeg::actors
