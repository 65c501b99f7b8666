#pragma once

#include "actors/pool_metrics.hpp"
#include "apps/aegaeon/run_summary.hpp"

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

// Where requests' latency goes (the paper's Fig. 14), how long scale-ups and KV syncs take
// (Fig. 15), and how many models are active at once against Theorem 3.1's E[m] (Fig. 4): plain
// computations over a simulated run's finished requests and switch logs.

namespace aeg::apps {

/// A request's end-to-end latency in six parts, seconds. Execution, control and data are what
/// its instances measured in the steps it was in; the waits are the rest of each phase: the
/// prefill phase from its arrival to its first token, the decode phase from then to its end.
struct latency_breakdown {
  double prefill_wait = 0, prefill_execute = 0;
  double decode_wait = 0, decode_execute = 0;
  double control = 0; ///< steps held beyond their compute: weights still arriving, queued work
  double data = 0;    ///< steps waiting for the request's batch's KV to be copied in

  /// The six parts together: the request's latency.
  double total() const {
    return prefill_wait + prefill_execute + decode_wait + decode_execute + control + data;
  }
  /// The parts in the order of `part_names`.
  std::vector<double> parts() const {
    return {prefill_wait, prefill_execute, decode_wait, decode_execute, control, data};
  }
};

/// "prefill waiting", "prefill execution", "decode waiting", "decode execution", "control
/// overhead", "data overhead".
const std::vector<std::string>& part_names();

/// The breakdown of `m` (a request that produced a token; its end at `m.end_seconds`). A wait
/// below zero would mean steps counted twice: it is kept as it is, for checks to see.
latency_breakdown breakdown_of(const actors::request_metrics& m);

/// Theorem 3.1: the expected number of active models (at least one request in service) among
/// `models` models, each with Poisson arrivals at `rate` per second served in a mean
/// `service_seconds`: M · (1 − e^(−λT)).
double expected_active_models(std::size_t models, double rate, double service_seconds);

/// A request's time in service: from its arrival to its end, seconds from the run's start.
struct service_span {
  std::string model;
  double start = 0, end = 0;
};

/// The count of active models over time: a point at 0 and at each change, (seconds, count).
std::vector<std::pair<double, std::size_t>>
active_models_over_time(std::vector<service_span> spans);

/// The time average of a step function given as `active_models_over_time` points, over
/// [0, until].
double time_average(const std::vector<std::pair<double, std::size_t>>& steps, double until);

/// What one setup (a pool, its model count and rate) shows.
struct breakdown_cell {
  std::string policy;
  std::size_t models = 0;
  double rate = 0;                ///< requests per second per model
  std::size_t requests = 0;       ///< finished ones, each counted in the means
  double attainment = 0;          ///< the run's SLO attainment (time-weighted)
  latency_breakdown mean_seconds; ///< each part's mean over the requests
  latency_breakdown mean_shares;  ///< each part's mean share of a request's latency (sum: 1)
  double most_negative_wait = 0;  ///< the lowest wait of any request (below 0: double counting)
  /// Of mean_seconds.control and .data, the means in the prefill phase (the rest: decoding).
  double prefill_control = 0, prefill_data = 0;
  /// Scale-up times (switch to weights all in) by model shape; prefetched ones included.
  std::map<std::string, latency_samples> scale_ups;
  std::size_t switches_timed = 0, prefetched = 0;
  latency_samples kv_sync;                            ///< each request's data overhead, seconds
  std::vector<std::pair<double, std::size_t>> active; ///< active models over time
  double active_mean = 0;                             ///< time average over the arrivals' window
  double service_seconds = 0;                         ///< mean time in service (Theorem 3.1's T)
  double expected_active = 0;                         ///< E[m] at `rate` and `service_seconds`
};

/// The cell of a run: `finished` its requests (ids index `arrivals`, the run's arrival times),
/// `shapes` each model's shape by name, over a window of `duration` seconds of arrivals.
breakdown_cell breakdown_cell_of(const run_result& run,
                                 const std::vector<actors::request_metrics>& finished,
                                 const std::vector<double>& arrivals,
                                 const std::map<std::string, std::string>& shapes, double duration);

/// The CSV of cells (a row each: setup, mean seconds and shares of each part, E[m] and the
/// active mean), and one cell's JSON (with its CDF samples and active-model series).
std::string breakdown_csv(const std::vector<breakdown_cell>& cells);
nlohmann::json to_json(const breakdown_cell& c);

} // namespace aeg::apps
