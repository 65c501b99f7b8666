#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace aeg::testing {

/// `n` values drawn from N(0, stddev²), the same for the same seed.
inline std::vector<float> normal_floats(std::size_t n, std::uint32_t seed, float stddev = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0, stddev);
  std::vector<float> v(n);
  for (auto& x : v)
    x = d(rng);
  return v;
}

} // namespace aeg::testing
