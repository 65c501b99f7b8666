#pragma once

#include "actors/generation.hpp"
#include "actors/pool_metrics.hpp"
#include "actors/pool_protocol.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <memory>

namespace aeg::actors {

/// Spawns the actor of one request of a pool: it streams the request's tokens to the client's
/// sink (under the client's id), measures them against the model's deadlines, passes the request
/// from its prefill instance to a decode instance, frees the KV it carries in between when
/// cancelled, and asks `proxy` to place it again when its instance dies. `id` is the pool's id of
/// the request; `client` the request as submitted (its id and sink are the client's; its
/// deadlines count from `client.arrived`).
request_actor spawn_request(caf::actor_system& sys, pool_proxy_actor proxy, std::uint64_t id,
                            generation_request client, const catalog_entry& model);

} // namespace aeg::actors
