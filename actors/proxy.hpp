#pragma once

#include "actors/generation.hpp"
#include "actors/instance.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace aeg::actors {

/// Submits a request to the proxy: `(submit_atom, generation_request)`; the reply is the id the
/// proxy gave it (for `cancel_atom`), or an error. Its tokens and end go to the request's sink.
using submit_atom = caf::atom_constant<caf::atom("submit")>;
/// Asks the proxy for `pool_metrics`.
using metrics_atom = caf::atom_constant<caf::atom("metrics")>;

/// An instance as the proxy sees it.
struct pool_member {
  caf::actor actor;
  instance_role role = instance_role::colocated;
  std::vector<std::string> models; ///< what it serves
  std::string name;                ///< for reports: "gpu0/decode"
  /// Its device KV pool, as planned (0: unknown). Decode placement keeps a model's requests on
  /// one instance while their KV fits there, and sends the rest to another.
  std::size_t kv_bytes = 0;
};

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

/// How a refusal for too much load begins (`submit_atom`'s error text), so that a front end
/// can tell "retry later" from "cannot serve this".
inline constexpr const char* overloaded_prefix = "overloaded: ";

/// How the proxy schedules.
struct proxy_options {
  routing route = routing::aegaeon;
  std::size_t max_group = 8;               ///< grouped FCFS group size; 1: plain FCFS
  std::size_t prefill_in_flight = 2;       ///< requests a prefill instance holds at once
  std::size_t max_queued = 100000;         ///< admission: requests the pool holds before refusing
  double prefill_tokens_per_second = 2000; ///< start of the prefill estimate
  double switch_bytes_per_second = 8e9;    ///< start of the switch estimate
  /// Finished requests kept in full for `metrics_atom` (the oldest go first); per-model totals
  /// count every one. A long-running server keeps few; an experiment keeps all.
  std::size_t keep_finished = std::numeric_limits<std::size_t>::max();
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

/// Counts how many of `times` (seconds from arrival) meet the deadlines described above.
std::size_t tokens_on_time(const std::vector<double>& times, double ttft, double tbt);

/// Seconds of [0, last token] during which the output was on schedule: each gap before a token
/// that met its deadline counts, each gap before a late one does not. Tokens at 3, 6, 7 and 8 s
/// with TTFT 3 s and TBT 2 s give 5 (of 8).
double seconds_on_schedule(const std::vector<double>& times, double ttft, double tbt);

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
  double switch_bytes_per_second = 0; ///< the scale-up rate prefill placement assumes
};

/// Spawns the proxy of a pool: the model catalog, the instances (monitored), routing and
/// admission, cancellation. Each request gets a request actor that streams its tokens to its
/// sink, keeps its deadlines, moves it from a prefill instance to a decode instance, frees its KV
/// when cancelled and re-places it on another instance (prefilling its prompt and the tokens so
/// far again) when its instance dies.
caf::actor spawn_proxy(caf::actor_system& sys, std::vector<pool_member> members,
                       std::vector<catalog_entry> catalog, proxy_options options);

} // namespace aeg::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(aeg::actors::pool_metrics)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(aeg::actors::request_metrics)
