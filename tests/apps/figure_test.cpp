// The figures bench, simulate and plot draw: each kind is valid XML and shows what it promises.

#include "apps/aegaeon/figure.hpp"
#include "tests/apps/svg_check.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace {

using namespace aeg::apps;
using aeg::testing::count_of;
using aeg::testing::well_formed;

// The `d` of the n-th `<path class="cdf">`.
std::string cdf_path(const std::string& svg, std::size_t n) {
  std::size_t at = 0;
  for (std::size_t k = 0; k <= n; ++k)
    at = svg.find("class=\"cdf\"", at + 1);
  const auto d = svg.find(" d=\"", at) + 4;
  return svg.substr(d, svg.find('"', d) - d);
}

TEST(SvgCheck, TellsWellFormedFromBroken) {
  EXPECT_TRUE(well_formed("<svg a=\"1\"><g><text>x &amp; y</text></g><rect/></svg>\n"));
  EXPECT_FALSE(well_formed("<svg><g></svg></g>"));
  EXPECT_FALSE(well_formed("<svg><text>a < b</text></svg>"));
  EXPECT_FALSE(well_formed("<svg><text>a & b</text></svg>"));
  EXPECT_FALSE(well_formed("<svg a=1/>"));
  EXPECT_FALSE(well_formed("<svg/><svg/>"));
}

TEST(Figure, AttainmentChartMarksTheNinetyPercentLineAndEachGoodput) {
  const std::vector<chart_series> series = {
      {"aegaeon", {{2, 100}, {4, 95}, {6, 70}}, 4.0},
      {"dedicated <&> \"x\"", {{2, 80}, {4, 40}, {6, 10}}, std::nullopt},
  };
  const auto svg = line_chart_svg("SLO attainment", "models", "SLO attainment (%)", series);
  EXPECT_TRUE(well_formed(svg)) << svg;
  EXPECT_EQ(count_of(svg, "class=\"threshold\""), 1u);
  EXPECT_NE(svg.find(">90%</text>"), std::string::npos);
  EXPECT_EQ(count_of(svg, "class=\"goodput\""), 1u); // only the series that reached 90%
  EXPECT_EQ(count_of(svg, "<circle"), 6u);
  EXPECT_NE(svg.find("dedicated &lt;&amp;&gt; &quot;x&quot;"), std::string::npos);
  EXPECT_NE(svg.find(">models</text>"), std::string::npos);
}

TEST(Figure, CdfRisesOncePerSample) {
  const std::vector<cdf_series> series = {{"aegaeon", {0.3, 0.1, 0.2, 0.5, 0.4}, "n=5"},
                                          {"fcfs", {1.0, 0.7, 0.9}, ""}};
  const auto svg =
      cdf_chart_svg("TTFT", "time to first token (s)", "share of requests (%)", series, 1.2);
  EXPECT_TRUE(well_formed(svg)) << svg;
  ASSERT_EQ(count_of(svg, "class=\"cdf\""), 2u);
  EXPECT_EQ(count_of(cdf_path(svg, 0), "V"), 5u);
  EXPECT_EQ(count_of(cdf_path(svg, 1), "V"), 3u);
  EXPECT_EQ(count_of(svg, "class=\"slo\""), 1u);
  EXPECT_NE(svg.find("SLO 1.2 s"), std::string::npos);
  EXPECT_NE(svg.find("aegaeon (n=5)"), std::string::npos);
  EXPECT_NE(svg.find("time to first token (s)"), std::string::npos);
  // An SLO far beyond every sample is named, not drawn.
  const auto far = cdf_chart_svg("TTFT", "s", "%", series, 60.0);
  EXPECT_EQ(count_of(far, "class=\"slo\""), 0u);
  EXPECT_NE(far.find("SLO 60 s, off the axis"), std::string::npos);
}

TEST(Figure, TimelineDrawsALanePerInstanceAndALegendPerModel) {
  const std::vector<timeline_lane> lanes = {
      {"d0/prefill#0", {{0, 4, "model-0", 0.5}, {4, 10, "model-1", 0}}},
      {"d1/decode#1", {{1, 3, "", 0}, {3, 10, "model-2", 0.25}}},
      {"d2/decode#2", {}},
  };
  const auto svg = timeline_svg("Active model per instance", lanes, 10);
  EXPECT_TRUE(well_formed(svg)) << svg;
  EXPECT_EQ(count_of(svg, "class=\"lane\""), 3u);
  EXPECT_EQ(count_of(svg, "class=\"bar\""), 4u);
  for (const char* m : {">model-0</text>", ">model-1</text>", ">model-2</text>"})
    EXPECT_EQ(count_of(svg, m), 1u) << m; // once in the legend
  EXPECT_NE(svg.find("not known"), std::string::npos);
  EXPECT_NE(svg.find("seconds since the run's start"), std::string::npos);
}

TEST(Figure, ManyModelsGetDistinctColours) {
  std::vector<timeline_lane> lanes(1);
  for (int i = 0; i < 30; ++i)
    lanes[0].bars.push_back({static_cast<double>(i), i + 1.0, "m" + std::to_string(i), 0});
  const auto svg = timeline_svg("many", lanes, 30);
  EXPECT_TRUE(well_formed(svg));
  std::vector<std::string> fills;
  for (auto at = svg.find("class=\"bar\""); at != std::string::npos;
       at = svg.find("class=\"bar\"", at + 1)) {
    const auto f = svg.find("fill=\"", at) + 6;
    fills.push_back(svg.substr(f, 7));
  }
  ASSERT_EQ(fills.size(), 30u);
  std::sort(fills.begin(), fills.end());
  EXPECT_EQ(std::unique(fills.begin(), fills.end()), fills.end());
}

} // namespace
