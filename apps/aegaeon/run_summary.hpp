#pragma once

#include "actors/pool_metrics.hpp"
#include "actors/trace_request.hpp"
#include "apps/aegaeon/switch_history.hpp"

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace aeg::apps {

/// Latencies of a run for its CDFs: every value measured, or `latency_sample_cap` evenly spaced
/// quantiles of them where there were more.
struct latency_samples {
  std::vector<double> seconds; ///< ascending
  std::size_t count = 0;       ///< values measured (more than `seconds` holds when capped)
};

/// The most values a `latency_samples` keeps.
inline constexpr std::size_t latency_sample_cap = 2048;

/// `values` sorted, or `cap` of their quantiles (nearest rank at (i + 0.5) / cap) where more.
latency_samples sample_latencies(std::vector<double> values, std::size_t cap = latency_sample_cap);

/// One run of a workload on a pool under one policy: what `bench --in-process` and `simulate`
/// report per cell.
struct run_result {
  std::string policy;
  std::size_t models = 0;
  double rate = 0;      ///< requests per second per model
  double slo_scale = 1; ///< the SLOs' factor against the base ones
  std::size_t requests = 0, finished = 0, rejected = 0, failed = 0;
  std::size_t tokens_expected = 0, tokens_on_time = 0;
  std::size_t prompt_tokens = 0; ///< the requests' prompt tokens (equal for equal arrivals)
  double attainment = 0;         ///< mean over requests of time on schedule (rejected: 0)
  double token_attainment = 0;   ///< tokens on time / tokens asked for (rejected count as late)
  double ttft_p50 = 0, ttft_p99 = 0, tbt_p99 = 0;
  std::size_t switches = 0;
  /// The step counters of every instance, summed.
  step_totals stepped;
  double seconds = 0;          ///< wall-clock seconds the run took
  std::string first_rejection; ///< why the first rejected request was refused
  std::string first_failure;   ///< why the first failed request failed
  latency_samples ttft, tbt;   ///< every request's first token; every gap between two tokens
  /// Each instance's switches, timed from the run's start; `timeline_seconds` is the run's length
  /// on that clock (a simulation's: virtual seconds).
  std::vector<instance_switches> instances;
  double timeline_seconds = 0;
};

/// Sets what `trace` asks of `r`'s run: its requests and their prompt and output tokens.
void count_arrivals(run_result& r, std::span<const actors::trace_request> trace);

/// Fills `r`'s outcome from the proxy's metrics of the run: `r.requests`, `r.rejected` and
/// `r.tokens_expected` must already be set (rejected requests count as 0% attainment).
void summarize(run_result& r, const actors::pool_metrics& m);

/// The results table: a header, then one row per run.
std::string table_header();
std::string table_row(const run_result& r);
/// The lines that follow a row with rejected or failed requests (empty when none).
std::string table_notes(const run_result& r);

/// CSV and JSON of runs, with every field (the JSON with the latency samples as "latency" and
/// the instances' switches as "timeline").
std::string csv_header();
std::string csv_row(const run_result& r);
nlohmann::json to_json(const run_result& r);

/// The most models `policy` served at `at_least` attainment or better among `runs`.
std::size_t goodput_models(const std::vector<run_result>& runs, const std::string& policy,
                           double at_least = 0.9);

} // namespace aeg::apps
