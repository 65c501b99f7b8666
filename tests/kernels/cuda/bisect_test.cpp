#include "kernels/cuda/bisect.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

namespace aeg::kernels::cuda {
namespace {

// The values a search must find, from both ends of the 32-bit range and between.
const std::vector<unsigned> answers = {0u,          1u,          2u,          12345u,
                                       0x7fffffffu, 0x80000000u, 0xfffffffeu, 0xffffffffu};

// A predicate that fails the test (by throwing out of the search) once it has been probed more
// often than a bisection of 32 bits needs: a search that stops making progress ends here.
template <class F>
auto bounded(F f) {
  return [f, probes = 0](unsigned x) mutable {
    if (++probes > 33)
      throw std::runtime_error("the search made no progress");
    return f(x);
  };
}

TEST(Bisect, HighestReachingFindsTheLastValueThatHoldsOverTheWholeRange) {
  for (unsigned answer : answers) {
    unsigned got = 0;
    ASSERT_NO_THROW(got = highest_reaching(bounded([&](unsigned x) { return x <= answer; })))
        << answer;
    EXPECT_EQ(got, answer);
  }
}

TEST(Bisect, LowestReachingFindsTheFirstValueThatHoldsOverTheWholeRange) {
  for (unsigned answer : answers) {
    unsigned got = 0;
    ASSERT_NO_THROW(got = lowest_reaching(bounded([&](unsigned x) { return x >= answer; })))
        << answer;
    EXPECT_EQ(got, answer);
  }
}

// The sampling kernel's top-k cut, run on the host: the highest key whose count of keys at or
// above it reaches k, then the lowest index among that key's logits that completes k. It must
// keep exactly the k highest logits, lower indices first among equals.
unsigned key_of(float f) {
  const auto u = std::bit_cast<std::uint32_t>(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

TEST(Bisect, TopKCutKeepsTheKHighestLogitsLowerIndexFirst) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> level(-20, 20); // few distinct values: many ties
  std::vector<float> logits(3000);
  for (auto& l : logits)
    l = static_cast<float>(level(rng)) * 0.25f;
  const auto n = static_cast<unsigned>(logits.size());
  auto at_or_above = [&](unsigned i, unsigned K, unsigned I) {
    const unsigned k = key_of(logits[i]);
    return k > K || (k == K && i <= I);
  };
  auto count = [&](unsigned K, unsigned I) {
    unsigned c = 0;
    for (unsigned i = 0; i < n; ++i)
      c += at_or_above(i, K, I) ? 1 : 0;
    return c;
  };
  std::vector<unsigned> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](unsigned a, unsigned b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (unsigned k : {1u, 2u, 7u, 100u, 2999u}) {
    unsigned K = 0, I = 0;
    ASSERT_NO_THROW({
      K = highest_reaching(bounded([&](unsigned m) { return count(m, 0xffffffffu) >= k; }));
      I = lowest_reaching(bounded([&](unsigned m) { return count(K, m) >= k; }));
    }) << "k "
       << k;
    std::vector<unsigned> kept;
    for (unsigned i = 0; i < n; ++i)
      if (at_or_above(i, K, I))
        kept.push_back(i);
    std::vector<unsigned> expected(order.begin(), order.begin() + k);
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(kept, expected) << "k " << k;
  }
}

} // namespace
} // namespace aeg::kernels::cuda
