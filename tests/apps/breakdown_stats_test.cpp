// Where latency goes, active models against E[m], and the figures that show them.

#include "apps/aegaeon/breakdown_stats.hpp"
#include "apps/aegaeon/figure.hpp"
#include "tests/apps/svg_check.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

namespace {

using namespace aeg::apps;
using aeg::actors::request_metrics;
using aeg::testing::count_of;
using aeg::testing::well_formed;

request_metrics request(std::uint64_t id, std::string model, std::vector<double> tokens, double end,
                        aeg::actors::service_times s) {
  request_metrics m;
  m.id = id;
  m.model = std::move(model);
  m.token_times = std::move(tokens);
  m.end_seconds = end;
  m.service = s;
  return m;
}

// Theorem 3.1 with the paper's production numbers: λ = 0.037 req/s, T = 16.79 s.
TEST(ExpectedActiveModels, IsTheClosedFormOfTheorem31) {
  EXPECT_NEAR(expected_active_models(100, 0.037, 16.79), 46.27, 0.01);
  EXPECT_NEAR(expected_active_models(16, 0.1, 3), 16 * (1 - std::exp(-0.3)), 1e-12);
  EXPECT_EQ(expected_active_models(10, 0.1, 0), 0);
  EXPECT_NEAR(expected_active_models(10, 5, 100), 10, 1e-9); // every model always busy
}

// The waits are what the phases hold beyond the steps: prefill from arrival to the first token,
// decode from there to the end; the six parts make the whole latency.
TEST(LatencyBreakdown, SixPartsMakeTheLatency) {
  const auto m = request(0, "a", {2.0, 2.5, 3.0}, 3.25, {0.5, 0.25, 0.75, 0.5, 0.125, 0.0625});
  const auto b = breakdown_of(m);
  EXPECT_DOUBLE_EQ(b.prefill_wait, 2.0 - 0.5 - 0.25 - 0.75);
  EXPECT_DOUBLE_EQ(b.prefill_execute, 0.5);
  EXPECT_DOUBLE_EQ(b.decode_wait, 1.25 - 0.5 - 0.125 - 0.0625);
  EXPECT_DOUBLE_EQ(b.decode_execute, 0.5);
  EXPECT_DOUBLE_EQ(b.control, 0.75 + 0.0625);
  EXPECT_DOUBLE_EQ(b.data, 0.25 + 0.125);
  EXPECT_NEAR(b.total(), m.end_seconds, 1e-12);
  EXPECT_EQ(part_names().size(), b.parts().size());
}

// A model is active while any of its requests is in service: overlapping requests of one model
// count once, back-to-back ones keep it active without a dip, and the mean weighs time.
TEST(ActiveModels, CountsModelsWithARequestInService) {
  const auto steps =
      active_models_over_time({{"a", 1, 4}, {"a", 2, 3}, {"b", 3, 5}, {"a", 4, 6}, {"c", 8, 9}});
  const std::vector<std::pair<double, std::size_t>> want = {{0, 0}, {1, 1}, {3, 2}, {5, 1},
                                                            {6, 0}, {8, 1}, {9, 0}};
  EXPECT_EQ(steps, want);
  // 1 over [1,3), 2 over [3,5), 1 over [5,6), 1 over [8,9) in 10 s.
  EXPECT_DOUBLE_EQ(time_average(steps, 10), (2 + 4 + 1 + 1) / 10.0);
  EXPECT_DOUBLE_EQ(time_average(steps, 4), (2 + 2) / 4.0); // a window cut short
}

// A cell's mean shares are each part's mean share of a request's latency: they add to one; its
// scale-ups are grouped by the shape of the model switched to, and E[m] uses the mean service.
TEST(BreakdownCell, SharesAddToOneAndScaleUpsGoByShape) {
  run_result run;
  run.policy = "aegaeon";
  run.models = 2;
  run.rate = 0.5;
  instance_switches inst;
  inst.switches = {{0, 0.0, "", "m0", 0.4, false},
                   {1, 1.0, "m0", "m1", 0.0, true},
                   {2, 2.0, "m1", "m0", -1, false}}; // still coming in: not timed
  run.instances.push_back(inst);
  const std::vector<request_metrics> finished = {
      request(0, "m0", {1.0, 2.0}, 2.0, {0.25, 0, 0.5, 0.5, 0.25, 0}),
      request(1, "m1", {3.0, 4.0}, 4.0, {1.0, 0, 0, 0.5, 0, 0.5})};
  const auto c = breakdown_cell_of(run, finished, {0.0, 1.0}, {{"m0", "7b"}, {"m1", "13b"}}, 5);
  EXPECT_EQ(c.requests, 2u);
  double shares = 0;
  for (const double v : c.mean_shares.parts())
    shares += v;
  EXPECT_NEAR(shares, 1, 1e-12);
  EXPECT_DOUBLE_EQ(c.mean_shares.prefill_wait, (0.25 / 2 + 2.0 / 4) / 2);
  EXPECT_DOUBLE_EQ(c.mean_seconds.data, 0.25 / 2);
  EXPECT_EQ(c.most_negative_wait, 0);
  EXPECT_DOUBLE_EQ(c.prefill_control, 0.5 / 2);
  EXPECT_DOUBLE_EQ(c.prefill_data, 0);
  EXPECT_EQ(c.switches_timed, 2u);
  EXPECT_EQ(c.prefetched, 1u);
  ASSERT_EQ(c.scale_ups.count("7b"), 1u);
  EXPECT_EQ(c.scale_ups.at("7b").seconds, std::vector<double>{0.4});
  EXPECT_EQ(c.scale_ups.at("13b").seconds, std::vector<double>{0.0});
  EXPECT_DOUBLE_EQ(c.service_seconds, 3);
  EXPECT_DOUBLE_EQ(c.expected_active, expected_active_models(2, 0.5, 3));
  // m0 in service over [0, 2), m1 over [1, 5): one, then two, then one, over 5 s.
  EXPECT_DOUBLE_EQ(c.active_mean, (1 * 1 + 2 * 1 + 1 * 3) / 5.0);
  const auto j = to_json(c);
  EXPECT_EQ(j["active_models"]["expected"], std::round(c.expected_active * 1e6) / 1e6);
  EXPECT_EQ(j["scale_up_seconds"]["7b"]["count"], 1);
  const auto csv = breakdown_csv({c});
  EXPECT_EQ(count_of(csv, "\n"), 2u);
  EXPECT_NE(csv.find("prefill_waiting_share"), std::string::npos);
}

TEST(Figure, StackedBarsStackEachPartInItsColour) {
  const std::vector<std::string> parts = {"wait", "run <&>"};
  const auto svg = stacked_bar_svg("Where it goes", "share (%)", parts,
                                   {{"16x0.1", {30, 70}}, {"32x0.1", {60, 40}}, {"64", {}}});
  EXPECT_TRUE(well_formed(svg)) << svg;
  EXPECT_EQ(count_of(svg, "<g class=\"bar\">"), 3u);
  EXPECT_EQ(count_of(svg, "<title>"), 4u); // a rect per part of each bar
  EXPECT_NE(svg.find("run &lt;&amp;&gt;"), std::string::npos);
}

TEST(Figure, StepChartHoldsEachValueAndMarksItsLevels) {
  const std::vector<chart_series> series = {{"active", {{0, 0}, {1, 50}, {3, 25}}, std::nullopt}};
  const auto svg = step_chart_svg("Active models", "seconds", "active (%)", series,
                                  {{40, "E[m] = 4"}, {30, "mean 3"}});
  EXPECT_TRUE(well_formed(svg)) << svg;
  EXPECT_EQ(count_of(svg, "class=\"steps\""), 1u);
  EXPECT_EQ(count_of(svg, "class=\"level\""), 2u);
  EXPECT_NE(svg.find("E[m] = 4"), std::string::npos);
  const auto d = svg.find(" d=\"M");
  ASSERT_NE(d, std::string::npos);
  EXPECT_EQ(count_of(svg.substr(d, svg.find('"', d + 4) - d), "V"), 2u); // one rise per change
}

} // namespace
