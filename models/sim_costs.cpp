#include "models/sim_costs.hpp"

#include <algorithm>

namespace aeg::models {

namespace {

gpu::sim_model_fit scaled(gpu::sim_model_fit fit, double by) {
  for (auto* c : {&fit.decode, &fit.prefill}) {
    c->a *= by;
    c->b *= by;
    c->c *= by;
  }
  return fit;
}

} // namespace

gpu::sim_model_fit sim_costs(const gpu::sim_profile& profile, const llama_config& config,
                             std::size_t weight_bytes, std::size_t kv_bytes_per_token) {
  if (auto it = profile.models.find(config.name); it != profile.models.end())
    return scaled(it->second, profile.step_scale);
  const double bw = profile.hbm_bytes_per_second * profile.bandwidth_efficiency;
  const double flops = profile.flops * profile.flops_efficiency;
  // Half-precision weights: one parameter per two bytes, 2 FLOPs per parameter per token.
  const double flops_per_token = static_cast<double>(weight_bytes);
  const double read_weights = static_cast<double>(weight_bytes) / bw;
  const double attention_flops =
      2.0 * static_cast<double>(config.num_layers * config.num_heads * config.head_dim);
  gpu::sim_model_fit fit;
  fit.decode = {profile.step_seconds + read_weights, static_cast<double>(kv_bytes_per_token) / bw,
                flops_per_token / flops};
  fit.prefill = {profile.step_seconds + read_weights, flops_per_token / flops,
                 attention_flops / flops};
  fit.source = "roofline of " + profile.name;
  return scaled(fit, profile.step_scale);
}

double sim_step_seconds(const gpu::sim_model_fit& fit, std::span<const sequence_step> steps) {
  double prompt_tokens = 0, pairs = 0, context = 0, decoding = 0;
  for (const auto& s : steps) {
    const auto n = static_cast<double>(s.tokens.size());
    const auto past = static_cast<double>(s.start_pos);
    if (s.tokens.size() == 1 && s.start_pos > 0) {
      context += past + 1;
      decoding += 1;
    } else {
      prompt_tokens += n;
      pairs += n * (past + n);
    }
  }
  double seconds = 0;
  if (prompt_tokens > 0)
    seconds += fit.prefill.at(prompt_tokens, pairs);
  if (decoding > 0)
    seconds += fit.decode.at(context, decoding) - (prompt_tokens > 0 ? fit.decode.a : 0);
  return std::max(seconds, 0.0); // a fit with a negative term may dip below zero for tiny steps
}

} // namespace aeg::models
