#include "models/sampling.hpp"

#include "kernels/cpu/ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace aeg::models {

namespace {

// splitmix64: a counter-based generator, so step n's number needs no state from step n-1.
std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

} // namespace

kernels::sampling_row sampling_row_for(const sampling_params& p, std::size_t step) noexcept {
  const std::uint64_t bits = mix(mix(p.seed) ^ static_cast<std::uint64_t>(step));
  // 24 random bits: exactly representable, strictly below 1.
  const float u = static_cast<float>(bits >> 40) / static_cast<float>(1u << 24);
  return {p.temperature, p.top_k, p.top_p, u};
}

token_logprobs logprobs_of(std::span<const float> logits, const kernels::sampling_row& rule,
                           std::int32_t token, std::size_t top) {
  token_logprobs out;
  out.asked = true;
  if (logits.empty())
    return out;
  const float inv_t = rule.temperature > 0 ? 1.0f / rule.temperature : 1.0f;
  const auto pickable = kernels::cpu::sampling_candidates(logits.data(), logits.size(), rule);
  // log Σ exp over the candidates, from the largest for accuracy.
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (auto i : pickable)
    sum += std::exp(static_cast<double>(logits[i] - max_logit) * inv_t);
  const double lse = static_cast<double>(max_logit) * inv_t + std::log(sum);
  const bool all = pickable.size() == logits.size();
  const std::vector<bool> in = [&] {
    std::vector<bool> v(all ? 0 : logits.size());
    for (auto i : pickable)
      if (!all)
        v[i] = true;
    return v;
  }();
  auto logprob = [&](std::int32_t i) {
    if (!all && !in[i])
      return -std::numeric_limits<float>::infinity();
    return static_cast<float>(static_cast<double>(logits[i]) * inv_t - lse);
  };
  out.logprob = logprob(token);
  // The most likely tokens are those of the highest logits, whatever the rule.
  const std::size_t n = std::min({top, max_top_logprobs, logits.size()});
  std::vector<std::int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(),
                    [&](std::int32_t a, std::int32_t b) {
                      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
                    });
  for (std::size_t i = 0; i < n; ++i) {
    out.top_tokens.push_back(order[i]);
    out.top_logprobs.push_back(logprob(order[i]));
  }
  return out;
}

} // namespace aeg::models
