// `aegaeon simulate --nodes --placement`: the devices split into nodes, every policy runs on them,
// and splits that do not divide evenly are refused with what would.

#include "tests/apps/cli_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

namespace {

using namespace aeg::testing;

TEST(CliSimulate, EveryPolicyRunsOnTwoPartitionedNodes) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_nodes";
  std::filesystem::create_directories(dir);
  const std::string json = (dir / "n.json").string();
  const auto r = run("simulate --profile " AEG_SOURCE_DIR "/profiles/h800.json --devices 4 "
                     "--prefill-devices 2 --nodes 2 --placement partitioned --mix qwen2.5-7b "
                     "--models 4 --duration 30 "
                     "--policies aegaeon,serverless_llm,serverless_llm_plus,dedicated,muxserve "
                     "--json " +
                     json);
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("2 nodes of 2 devices each, partitioned placement"), std::string::npos)
      << r.output;
  nlohmann::json doc;
  std::ifstream(json) >> doc;
  EXPECT_EQ(doc["nodes"], 2);
  EXPECT_EQ(doc["placement"], "partitioned");
  ASSERT_EQ(doc["runs"].size(), 5u) << doc.dump(2);
  for (const auto& run : doc["runs"]) {
    const auto requests = run["requests"].get<std::size_t>();
    EXPECT_GT(requests, 0u);
    // Two devices a node hold each node's two models under every policy: nothing is refused.
    EXPECT_EQ(run["rejected"].get<std::size_t>(), 0u) << run.dump(2);
    EXPECT_EQ(run["finished"].get<std::size_t>(), requests) << run["policy"];
  }
  std::filesystem::remove_all(dir);
}

TEST(CliSimulate, UnevenNodeSplitsAreRefusedWithWhatWouldSplit) {
  const auto r = run("simulate --profile " AEG_SOURCE_DIR "/profiles/h800.json --devices 4 "
                     "--prefill-devices 1 --nodes 2 --models 2 --duration 10");
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("do not split evenly into 2 nodes"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--prefill-devices 2"), std::string::npos) << r.output;
  const auto market = run("simulate --nodes 2 --market 10");
  EXPECT_NE(market.rc, 0);
  EXPECT_NE(market.output.find("--market excludes --nodes"), std::string::npos) << market.output;
  const auto bad = run("simulate --placement sharded");
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.output.find("--placement"), std::string::npos) << bad.output;
}

} // namespace
