#pragma once

#include "actors/topology.hpp"
#include "actors/trace_request.hpp"
#include "coro/error.hpp"

#include <cstddef>
#include <string>
#include <vector>

namespace aeg::apps {

/// Memory MuxServe's placement leaves free of weights on each device, for KV and activations:
/// two full 4,096-token contexts of a Llama-2-13B shape (0.8 MiB a token) and some room.
inline constexpr std::size_t muxserve_kv_reserve_bytes = std::size_t{8} << 30;

/// Places `spec`'s models on its instances as MuxServe does (`sched::place_muxserve`: at most
/// two per device of `device_bytes`, by rate × weight size), each model's rate its requests in
/// `trace` over `duration` seconds. Each instance then serves the models of its device, with
/// weight memory for both side by side (the KV pool has the rest); devices
/// that got none lose their instance, and the models no device took are served by none (the
/// pool refuses their requests). `spec` is `policy_pool`'s for "muxserve" (one instance per
/// simulated device; weights sized as a simulated device holds them). Returns the unplaced
/// models.
result<std::vector<std::string>> place_muxserve(actors::pool_spec& spec,
                                                const std::vector<actors::trace_request>& trace,
                                                double duration, std::size_t device_bytes);

} // namespace aeg::apps
