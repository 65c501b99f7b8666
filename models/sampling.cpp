#include "models/sampling.hpp"

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

} // namespace aeg::models
