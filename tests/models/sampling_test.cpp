// Log-probabilities of picked tokens: they are the distribution the sampling kernel draws from.

#include "kernels/cpu/ops.hpp"
#include "models/sampling.hpp"
#include "tests/support/random_values.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace aeg::models {
namespace {

std::vector<float> random_logits(std::size_t vocab, unsigned seed) {
  return aeg::testing::normal_floats(vocab, seed, 2.5f);
}

// Each token's probability as logprobs_of states it, and as often as sample_row picks it over an
// even grid of uniform numbers: the two agree, tokens outside the cut are never picked, and the
// stated probabilities sum to one.
TEST(Logprobs, AreTheDistributionTheSamplerDrawsFrom) {
  const auto logits = random_logits(300, 7);
  const kernels::sampling_row rules[] = {{1.0f, 0, 1.0f, 0},
                                         {0.7f, 0, 1.0f, 0},
                                         {1.3f, 20, 1.0f, 0},
                                         {1.0f, 0, 0.8f, 0},
                                         {0.5f, 50, 0.9f, 0}};
  for (const auto& rule : rules) {
    std::vector<double> stated(logits.size());
    double total = 0;
    for (std::size_t i = 0; i < logits.size(); ++i) {
      stated[i] = std::exp(logprobs_of(logits, rule, static_cast<std::int32_t>(i), 0).logprob);
      total += stated[i];
    }
    EXPECT_NEAR(total, 1.0, 1e-4);
    std::vector<int> picked(logits.size());
    const int draws = 20000;
    for (int k = 0; k < draws; ++k) {
      auto r = rule;
      r.u = (static_cast<float>(k) + 0.5f) / draws;
      ++picked[kernels::cpu::sample_row(logits.data(), logits.size(), r)];
    }
    for (std::size_t i = 0; i < logits.size(); ++i) {
      EXPECT_NEAR(picked[i] / double(draws), stated[i], 2e-3)
          << "token " << i << ", temperature " << rule.temperature << ", top_k " << rule.top_k
          << ", top_p " << rule.top_p;
      if (stated[i] == 0)
        EXPECT_EQ(picked[i], 0);
    }
  }
}

TEST(Logprobs, GreedyIsTheLogSoftmaxWithTheMostLikelyFirst) {
  const auto logits = random_logits(500, 3);
  const auto best =
      static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const auto lp = logprobs_of(logits, {0.0f, 0, 1.0f, 0.3f}, best, 5);
  double sum = 0;
  for (float x : logits)
    sum += std::exp(static_cast<double>(x));
  EXPECT_TRUE(lp.asked);
  EXPECT_NEAR(lp.logprob, logits[best] - std::log(sum), 1e-4);
  ASSERT_EQ(lp.top_tokens.size(), 5u);
  EXPECT_EQ(lp.top_tokens[0], best);
  EXPECT_EQ(lp.top_logprobs[0], lp.logprob);
  for (std::size_t i = 1; i < 5; ++i)
    EXPECT_LE(lp.top_logprobs[i], lp.top_logprobs[i - 1]);
}

TEST(Logprobs, AlternativesStopAtTwentyAndOutsideTheCutAreMinusInfinity) {
  const auto logits = random_logits(100, 11);
  const auto lp = logprobs_of(logits, {1.0f, 3, 1.0f, 0.5f}, 0, 50);
  ASSERT_EQ(lp.top_tokens.size(), max_top_logprobs);
  for (std::size_t i = 0; i < lp.top_logprobs.size(); ++i)
    EXPECT_EQ(std::isinf(lp.top_logprobs[i]), i >= 3) << i; // top-3: the rest cannot be picked
  EXPECT_TRUE(logprobs_of(logits, {1.0f, 0, 1.0f, 0}, 4, 0).top_tokens.empty());
}

} // namespace
} // namespace aeg::models
