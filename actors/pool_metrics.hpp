#pragma once

#include "actors/generation.hpp"
#include "actors/instance.hpp"
#include "actors/sched/deadlines.hpp"

#include <caf/allowed_unsafe_message_type.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

// What a pool knows of its models and its finished requests: the catalog's entries and the
// metrics a proxy reports. Plain data.

namespace aeg::actors {

using sched::seconds_on_schedule;
using sched::tokens_on_time;

/// A model of the catalog and its service-level objectives.
struct catalog_entry {
  std::string name;
  double ttft_seconds = 10;
  double tbt_seconds = 0.1;
  std::size_t context_length = 0;
  std::size_t vocab_size = 0;
  std::size_t image_bytes = 0;
  std::size_t kv_block_bytes = 0; ///< one 16-token KV block
};

/// One finished request's times (seconds from its arrival) and SLO attainment. The first token's
/// deadline is arrival + TTFT; each later token's is the previous deadline + TBT, or the previous
/// token's time + TBT when that token was late (a late token re-anchors the schedule instead of
/// condemning every later one). Attainment is measured two ways: the share of tokens that met
/// their deadlines, and the share of the request's time (arrival to last token) during which its
/// output was on schedule, where the whole wait for a late token counts as off schedule. The
/// second is the paper's evaluation metric: a long wait before the first token costs in
/// proportion to its length, not as one late token.
struct request_metrics {
  std::uint64_t id = 0;
  std::string model;
  finish_reason reason = finish_reason::stop;
  std::size_t prompt_tokens = 0;
  std::vector<double> token_times; ///< from arrival
  std::size_t tokens_on_time = 0;
  double seconds_on_schedule = 0;
  double ttft_slo = 10, tbt_slo = 0.1;
  bool rerouted = false;
  std::string message;
  double end_seconds = 0; ///< from arrival to its end
  /// Its steps on every instance that served it (those of an instance lost mid-request excepted).
  service_times service;

  double ttft() const { return token_times.empty() ? -1 : token_times.front(); }
  /// Share of tokens on time; 0 for a request that produced none.
  double attainment() const {
    return token_times.empty()
               ? 0.0
               : static_cast<double>(tokens_on_time) / static_cast<double>(token_times.size());
  }
  /// Share of time on schedule; 0 for a request that produced none.
  double time_attainment() const {
    return token_times.empty() || token_times.back() <= 0
               ? (token_times.empty() ? 0.0 : 1.0)
               : seconds_on_schedule / token_times.back();
  }
};

/// Totals over every request of a model that finished.
struct model_totals {
  std::size_t requests = 0;
  std::size_t tokens = 0, tokens_on_time = 0;
  double attainment_sum = 0; ///< of request_metrics::time_attainment(), for the mean
};

/// What the proxy knows of the pool.
struct pool_metrics {
  std::vector<request_metrics> finished;      ///< finished requests (the latest keep_finished)
  std::map<std::string, model_totals> totals; ///< every finished request, by model
  std::map<std::string, std::size_t> queued_by_model;    ///< waiting for a prefill instance
  std::map<std::string, std::size_t> in_flight_by_model; ///< admitted and not yet finished
  std::size_t rejected = 0;
  std::size_t instances_alive = 0;
  /// Every instance the proxy has used (a front end's include workers joined again): its name,
  /// handle and whether it is alive.
  struct member_report {
    std::string name;
    instance_actor actor;
    bool alive = false;
  };
  std::vector<member_report> members;
  double switch_bytes_per_second = 0; ///< the scale-up rate prefill placement assumes
};

} // namespace aeg::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(aeg::actors::pool_metrics)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(aeg::actors::request_metrics)
