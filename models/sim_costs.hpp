#pragma once

#include "gpu/sim/sim_profile.hpp"
#include "models/llama/config.hpp"
#include "models/llama/runner.hpp"

#include <cstddef>
#include <span>

namespace aeg::models {

/// The step times of a model of `config` whose image takes `weight_bytes` on a device of
/// `profile`: the profile's fit for the model's shape (`config.name`) when it has one, else the
/// roofline: a decode step reads every weight and each context token's K and V once at the
/// profile's bandwidth efficiency and computes 2 FLOPs per weight per sequence; a prefill step
/// reads the weights once and computes 2 FLOPs per weight per token plus causal attention (2 ·
/// heads · head_dim FLOPs per layer per token pair), at the FLOPS efficiency. Either way times
/// the profile's `step_scale`.
gpu::sim_model_fit sim_costs(const gpu::sim_profile& profile, const llama_config& config,
                             std::size_t weight_bytes, std::size_t kv_bytes_per_token);

/// Seconds one step of `steps` takes by `fit`: the prefill fit over the sequences reading a
/// prompt (x = their tokens, y = Σ tokens × context), plus the decode fit over those decoding
/// one token (x = their context, y = how many), its fixed part counted once.
double sim_step_seconds(const gpu::sim_model_fit& fit, std::span<const sequence_step> steps);

} // namespace aeg::models
