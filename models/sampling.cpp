#include "models/sampling.hpp"

#include "kernels/cpu/ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

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
  const std::size_t vocab = logits.size();
  // Higher logit first, lower index first among equals: the order the sampling kernels cut in.
  auto higher = [&](std::int32_t a, std::int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  const bool sampled = rule.temperature > 0;
  const bool cut = sampled && ((rule.top_k > 0 && static_cast<std::size_t>(rule.top_k) < vocab) ||
                               rule.top_p < 1);
  const float inv_t = sampled ? 1.0f / rule.temperature : 1.0f;
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  // The candidates are a highest-first prefix: the cut is its last token (none: every token).
  std::int32_t last = -1;
  double sum = 0; // Σ exp over the candidates, from the largest for accuracy
  if (cut) {
    const auto pickable = kernels::cpu::sampling_candidates(logits.data(), vocab, rule);
    for (auto i : pickable)
      sum += std::exp(static_cast<double>(logits[i] - max_logit) * inv_t);
    last = pickable.back();
  } else {
    for (float x : logits)
      sum += std::exp(static_cast<double>(x - max_logit) * inv_t);
  }
  const double lse = static_cast<double>(max_logit) * inv_t + std::log(sum);
  auto logprob = [&](std::int32_t i) {
    if (last >= 0 && higher(last, i))
      return -std::numeric_limits<float>::infinity(); // below the cut: never picked
    return static_cast<float>(static_cast<double>(logits[i]) * inv_t - lse);
  };
  out.logprob = logprob(token);
  // The most likely tokens, in one pass: a sorted list of at most n, no vocabulary-sized copy.
  const std::size_t n = std::min({top, max_top_logprobs, vocab});
  std::vector<std::int32_t> best;
  best.reserve(n + 1);
  for (std::int32_t i = 0; n > 0 && i < static_cast<std::int32_t>(vocab); ++i) {
    if (best.size() == n && !higher(i, best.back()))
      continue;
    best.insert(std::upper_bound(best.begin(), best.end(), i, higher), i);
    if (best.size() > n)
      best.pop_back();
  }
  for (auto i : best) {
    out.top_tokens.push_back(i);
    out.top_logprobs.push_back(logprob(i));
  }
  return out;
}

} // namespace aeg::models
