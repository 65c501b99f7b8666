// Synthetic workloads: per-model rates, and the production scenario's skewed market.

#include "apps/aegaeon/trace.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>

namespace aeg::apps {
namespace {

TEST(MarketRates, SpanTheirRangeWithTheMeanAsked) {
  const auto rates = market_rates(47, 0.01, 0.037, 1.13);
  ASSERT_TRUE(rates.has_value()) << rates.error().message;
  ASSERT_EQ(rates->size(), 47u);
  EXPECT_DOUBLE_EQ(rates->front(), 1.13);
  EXPECT_NEAR(std::accumulate(rates->begin(), rates->end(), 0.0) / 47, 0.037, 1e-12);
  EXPECT_TRUE(std::is_sorted(rates->rbegin(), rates->rend())); // most requested first
  EXPECT_GE(rates->back(), 0.01);
  EXPECT_LT(rates->back(), 0.012); // the long tail sits near the minimum
  EXPECT_EQ(*market_rates(1, 0.01, 0.5, 1.0), std::vector<double>{0.5});
}

TEST(MarketRates, RefuseAMeanNoMarketHas) {
  for (const auto& [min, mean, max] :
       std::vector<std::tuple<double, double, double>>{{0.01, 0.011, 1.13}, // below max + minimums
                                                       {0.01, 1.0, 1.13},   // a second above max
                                                       {0.01, 2, 1.13},     // mean above max
                                                       {0, 0.037, 1.13}}) {
    const auto r = market_rates(47, min, mean, max);
    EXPECT_FALSE(r.has_value()) << min << " " << mean << " " << max;
  }
}

TEST(MakeTrace, GivesEachModelItsOwnRate) {
  trace_options o{{"busy", "quiet"}, 0, 4000, 100, 100, 1024, 1024, 7, {1.0, 0.05}};
  std::map<std::string, std::size_t> count;
  for (const auto& r : make_trace(o))
    ++count[r.model];
  EXPECT_NEAR(count["busy"], 4000, 4 * 63); // Poisson: within 4 standard deviations
  EXPECT_NEAR(count["quiet"], 200, 4 * 15);
}

} // namespace
} // namespace aeg::apps
