#pragma once

#include "actors/generation.hpp"
#include "actors/instance.hpp"
#include "actors/pool_metrics.hpp"
#include "actors/pool_protocol.hpp"

#include <caf/fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace aeg::actors {

/// How a refusal for too much load begins (`submit_atom`'s error text), so that a front end
/// can tell "retry later" from "cannot serve this".
inline constexpr const char* overloaded_prefix = "overloaded: ";

/// How the proxy schedules.
struct proxy_options {
  routing route = routing::aegaeon;
  std::size_t max_group = 8; ///< grouped FCFS group size; 1: plain FCFS
  /// Colocated routing (`policy_spec::scale_queue`, `max_replicas`): another instance for a model
  /// only when each of its instances holds more than `scale_queue` of its requests, and at most
  /// `max_replicas` of them (0: no limit). ServerlessLLM's `QS=4, R=1` as the artifact ran it.
  std::size_t scale_queue = 4;
  std::size_t max_replicas = 1;
  std::size_t prefill_in_flight = 2;       ///< requests a prefill instance holds at once
  std::size_t max_queued = 100000;         ///< admission: requests the pool holds before refusing
  double prefill_tokens_per_second = 2000; ///< start of the prefill estimate
  double switch_bytes_per_second = 8e9;    ///< start of the switch estimate
  /// Finished requests kept in full for `metrics_atom` (the oldest go first); per-model totals
  /// count every one. A long-running server keeps few; an experiment keeps all.
  std::size_t keep_finished = std::numeric_limits<std::size_t>::max();
};

/// Spawns the proxy of a pool: the model catalog, the instances (monitored), routing and
/// admission, cancellation. Each request gets a request actor that streams its tokens to its
/// sink, keeps its deadlines, moves it from a prefill instance to a decode instance, frees its KV
/// when cancelled and re-places it on another instance (prefilling its prompt and the tokens so
/// far again) when its instance dies.
proxy_actor spawn_proxy(caf::actor_system& sys, std::vector<pool_member> members,
                        std::vector<catalog_entry> catalog, proxy_options options);

} // namespace aeg::actors
