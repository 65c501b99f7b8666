// Synthetic weights are drawn by `normal_floats`, which must give what libstdc++'s
// std::normal_distribution<float> gives from the same engine: the weights every test and
// benchmark was built on stay the same to the bit.

#include "models/llama/normal_floats.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <random>

namespace aeg::models {
namespace {

TEST(NormalFloats, DrawWhatTheStandardLibrarysNormalDistributionDraws) {
#if !defined(_GLIBCXX_RELEASE) || _GLIBCXX_RELEASE > 13
  GTEST_SKIP() << "the draws follow libstdc++ 12's normal_distribution and generate_canonical";
#endif
  for (const std::uint64_t seed : {0ull, 1ull, 0x9E3779B97F4A7C15ull, 123456789ull})
    for (const float mean : {0.0f, 1.0f, -3.5f})
      for (const float stddev : {0.02f, 1.0f}) {
        std::mt19937_64 rng(seed);
        std::normal_distribution<float> reference(mean, stddev);
        normal_floats ours(seed, mean, stddev);
        for (int i = 0; i < 20000; ++i) {
          const float want = reference(rng), got = ours();
          ASSERT_EQ(std::bit_cast<std::uint32_t>(got), std::bit_cast<std::uint32_t>(want))
              << "seed " << seed << ", mean " << mean << ", stddev " << stddev << ", draw " << i
              << ": " << got << " against " << want;
        }
      }
}

TEST(NormalFloats, TheSameSeedGivesTheSameDraws) {
  normal_floats a(7, 0, 1), b(7, 0, 1), c(8, 0, 1);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    const float x = a();
    EXPECT_EQ(x, b());
    differs |= x != c();
  }
  EXPECT_TRUE(differs) << "another seed draws other values";
}

} // namespace
} // namespace aeg::models
