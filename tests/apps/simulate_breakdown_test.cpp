// `aegaeon simulate --breakdown` as a user runs it: the table, and reports that hold what they
// promise.

#include "tests/apps/cli_support.hpp"
#include "tests/apps/svg_check.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

using namespace aeg::testing;

std::string read(const std::filesystem::path& p) {
  std::stringstream s;
  s << std::ifstream(p).rdbuf();
  return s.str();
}

// Two small setups: the CSV has a row each, the JSON each setup's six shares (adding to one),
// scale-up and KV-sync samples and active models against E[m], and every figure is written.
TEST(Cli, SimulateBreakdownWritesWhereLatencyGoes) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_breakdown";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto json = dir / "b.json", csv = dir / "b.csv", svg = dir / "b.svg";
  const auto r = run("simulate --profile " AEG_SOURCE_DIR "/profiles/h800.json --devices 3 "
                     "--prefill-devices 1 --duration 60 --breakdown --setups 4x0.2,6x0.1 --json " +
                     json.string() + " --csv " + csv.string() + " --svg " + svg.string());
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("E[m]"), std::string::npos) << r.output;
  const auto doc = nlohmann::json::parse(read(json));
  ASSERT_EQ(doc["breakdown"].size(), 2u) << doc.dump(2);
  EXPECT_EQ(doc["parts"].size(), 6u);
  for (const auto& c : doc["breakdown"]) {
    EXPECT_EQ(c["policy"], "aegaeon"); // no --policies: Aegaeon's pool alone
    ASSERT_GT(c["requests"].get<std::size_t>(), 0u) << c.dump();
    double shares = 0;
    for (const auto& part : doc["parts"]) {
      const double v = c["mean_shares"][part.get<std::string>()].get<double>();
      EXPECT_GE(v, -1e-6) << part;
      shares += v;
    }
    EXPECT_NEAR(shares, 1, 1e-4) << c["mean_shares"];
    EXPECT_GE(c["most_negative_wait"].get<double>(), -1e-6);
    EXPECT_EQ(c["kv_sync_seconds"]["count"], c["requests"]);
    EXPECT_FALSE(c["scale_up_seconds"]["qwen2.5-7b"]["seconds"].empty()) << c["scale_up_seconds"];
    const auto& active = c["active_models"];
    const double m = c["models"].get<double>(), rate = c["rate"].get<double>();
    const double t = active["service_seconds"].get<double>();
    EXPECT_NEAR(active["expected"].get<double>(), m * (1 - std::exp(-rate * t)), 1e-5);
    EXPECT_GT(active["mean"].get<double>(), 0);
    EXPECT_LE(active["mean"].get<double>(), m);
    EXPECT_FALSE(active["series"].empty());
  }
  std::ifstream rows(csv);
  std::size_t lines = 0;
  for (std::string line; std::getline(rows, line);)
    ++lines;
  EXPECT_EQ(lines, 3u); // the header and a row per setup
  const auto bars = read(svg);
  EXPECT_TRUE(well_formed(bars));
  EXPECT_EQ(count_of(bars, "<g class=\"bar\">"), 2u);
  for (const char* f : {"b-breakdown.svg", "b-kv-sync-cdf-aegaeon.svg",
                        "b-scale-up-cdf-aegaeon-4x0.2.svg", "b-active-models-aegaeon-6x0.1.svg"}) {
    ASSERT_TRUE(std::filesystem::exists(dir / f)) << f << "\n" << r.output;
    EXPECT_TRUE(well_formed(read(dir / f))) << f;
  }
  EXPECT_NE(read(dir / "b-active-models-aegaeon-6x0.1.svg").find("E[m] = "), std::string::npos);
  std::filesystem::remove_all(dir);
}

} // namespace
