// `aegaeon simulate` with MuxServe (its placement decides which models a pool serves), and what
// a profile's switch cost does to Aegaeon's turns.

#include "tests/apps/cli_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

namespace {

using namespace aeg::testing;

// One simulated H800 holds two of three 7B models (the two most requested); the third's
// requests are refused at once, with the reason, and count as misses in the attainment.
TEST(CliSimulate, MuxServeServesTwoModelsPerDeviceAndRefusesTheRest) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_muxserve";
  std::filesystem::create_directories(dir);
  const std::string json = (dir / "m.json").string();
  const auto r = run("simulate --profile " AEG_SOURCE_DIR "/profiles/h800.json --devices 1 "
                     "--prefill-devices 0 --mix qwen2.5-7b --models 3 --duration 600 "
                     "--policies muxserve --json " +
                     json);
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("is placed on no instance"), std::string::npos) << r.output;
  nlohmann::json doc;
  std::ifstream(json) >> doc;
  ASSERT_EQ(doc["runs"].size(), 1u) << doc.dump(2);
  const auto& run = doc["runs"][0];
  EXPECT_EQ(run["policy"], "muxserve");
  const auto requests = run["requests"].get<std::size_t>();
  const auto rejected = run["rejected"].get<std::size_t>();
  EXPECT_GT(rejected, 0u);
  EXPECT_LT(rejected, requests);
  EXPECT_EQ(run["finished"].get<std::size_t>() + rejected, requests);
  // Refused requests score zero: the attainment is at most the share served.
  EXPECT_LE(run["attainment"].get<double>(),
            static_cast<double>(requests - rejected) / static_cast<double>(requests) + 1e-9);
  std::filesystem::remove_all(dir);
}

// Aegaeon sizes its turns by the switch cost it learns: the same arrivals on a device whose
// switches cost a second more switch models less often, and each cold scale-up shows the cost.
TEST(CliSimulate, DearerSwitchesMakeAegaeonTakeLongerTurns) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_switch_cost";
  std::filesystem::create_directories(dir);
  nlohmann::json h800;
  std::ifstream(AEG_SOURCE_DIR "/profiles/h800.json") >> h800;
  struct outcome {
    std::size_t switches = 0;
    double cold_mean = 0;
  };
  const auto simulate = [&](double switch_seconds) {
    h800["switch_seconds"] = switch_seconds;
    const auto profile = (dir / "p.json").string(), json = (dir / "s.json").string();
    std::ofstream(profile) << h800.dump();
    const auto r = run("simulate --profile " + profile +
                       " --devices 1 --prefill-devices 0 --mix qwen2.5-7b --models 6 --rate 0.5 "
                       "--duration 120 --policies aegaeon --json " +
                       json);
    EXPECT_EQ(r.rc, 0) << r.output;
    nlohmann::json doc;
    std::ifstream(json) >> doc;
    const auto& run = doc["runs"][0];
    outcome o{run["switches"].get<std::size_t>(), 0};
    std::size_t cold = 0;
    for (const auto& instance : run["timeline"]["instances"])
      for (const auto& sw : instance["switches"])
        if (!sw["prefetched"].get<bool>()) {
          o.cold_mean += sw["scale_up_seconds"].get<double>();
          ++cold;
        }
    if (cold > 0)
      o.cold_mean /= static_cast<double>(cold);
    return o;
  };
  const auto cheap = simulate(0), dear = simulate(1);
  EXPECT_GT(cheap.switches, 0u);
  EXPECT_LT(dear.switches, cheap.switches);
  EXPECT_GE(dear.cold_mean, cheap.cold_mean + 1 - 1e-6);
  std::filesystem::remove_all(dir);
}

} // namespace
