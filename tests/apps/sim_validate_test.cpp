// scripts/sim-validate --compare: the table of real runs against a simulated one, its verdict in
// the exit status, and its refusal of runs that did not see the same arrivals.

#include "tests/apps/cli_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

namespace {

using namespace aeg::testing;

outcome validate(const std::string& args) {
  return run_shell("python3 " AEG_SOURCE_DIR "/scripts/sim-validate " + args);
}

TEST(SimValidate, ComparesRunsOfTheSameArrivalsAndSaysWhetherTheAimIsMet) {
  if (std::system("python3 -c '' 2>/dev/null") != 0)
    GTEST_SKIP() << "python3 is not installed";
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_sim_validate";
  std::filesystem::create_directories(dir);
  const auto sweep = [&](const std::string& name, const std::string& seed) {
    const std::string json = (dir / name).string();
    const auto r = run("simulate --profile " AEG_SOURCE_DIR "/profiles/h800.json --devices 2 "
                       "--prefill-devices 0 --mix qwen2.5-7b --models 2,3 --duration 300 "
                       "--policies aegaeon,request_level --seed " +
                       seed + " --json " + json);
    EXPECT_EQ(r.rc, 0) << r.output;
    return json;
  };
  const auto a = sweep("a.json", "1"), other = sweep("other.json", "2");

  // A run against itself: every cell the same, the aim met.
  auto r = validate("--compare " + a + "," + a + " " + a);
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("| aegaeon, 3 models |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("4 of 4 cells within 5 points"), std::string::npos) << r.output;

  // One cell 20 points off: marked, and the aim not met.
  nlohmann::json doc;
  std::ifstream(a) >> doc;
  doc["runs"][0]["attainment"] = doc["runs"][0]["attainment"].get<double>() - 0.2;
  const std::string off = (dir / "off.json").string();
  std::ofstream(off) << doc.dump();
  r = validate("--compare " + a + " " + off);
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("**-20.0**"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 of 4 cells within 5 points"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("the aim is not met"), std::string::npos) << r.output;

  // Other arrivals, a cell missing, or no run at all: refused.
  r = validate("--compare " + a + " " + other);
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("saw different arrivals"), std::string::npos) << r.output;
  doc["runs"].erase(doc["runs"].begin());
  const std::string fewer = (dir / "fewer.json").string();
  std::ofstream(fewer) << doc.dump();
  r = validate("--compare " + fewer + " " + a);
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("compare runs of the same cells"), std::string::npos) << r.output;
  r = validate("--compare " + (dir / "none.json").string() + " " + a);
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("is not the JSON of a bench or simulate run"), std::string::npos);
  std::filesystem::remove_all(dir);
}

} // namespace
