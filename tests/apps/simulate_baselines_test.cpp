// `aegaeon simulate` with MuxServe: its placement decides which models a pool serves.

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

} // namespace
