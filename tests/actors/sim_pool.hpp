#pragma once

// Pools of simulated GPUs for tests in virtual time (actors/simulation).

#include "actors/topology.hpp"
#include "gpu/sim/sim_profile.hpp"

#include <cstddef>
#include <memory>
#include <string>

namespace aeg::actors {

/// `devices` simulated H800-like GPUs (the profile's defaults, with scale-ups at 32 GB/s plus
/// `switch_seconds`), the first `prefill` of them prefill-only (0: colocated), serving `models`
/// synthetic Qwen2.5-7B shapes named m0, m1, ...
inline pool_spec sim_pool(std::size_t devices, std::size_t prefill, std::size_t models,
                          routing route = routing::aegaeon, double switch_seconds = 0) {
  pool_spec s;
  auto profile = std::make_shared<gpu::sim_profile>();
  profile->name = "test-gpu";
  profile->h2d_bytes_per_second = 32e9;
  profile->switch_seconds = switch_seconds;
  s.sim_profile = profile;
  for (std::size_t i = 0; i < devices; ++i) {
    s.devices.push_back({"g" + std::to_string(i), "sim", static_cast<int>(i), 0});
    instance_spec is;
    is.device = s.devices.back().name;
    is.max_batch_tokens = 4096;
    is.max_seqs = 64;
    if (prefill > 0)
      is.role = i < prefill ? instance_role::prefill : instance_role::decode;
    s.instances.push_back(is);
  }
  for (std::size_t i = 0; i < models; ++i) {
    model_spec m;
    m.name = "m" + std::to_string(i);
    m.source.synthetic = "qwen2.5-7b";
    s.models.push_back(m);
  }
  s.policy.route = route;
  s.host_kv_bytes = std::size_t{64} << 30;
  s.slab_bytes = std::size_t{64} << 20;
  return s;
}

} // namespace aeg::actors
