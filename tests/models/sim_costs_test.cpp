// What a simulated step costs: a profile's own fit for its shape, else the roofline.

#include "models/sim_costs.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace aeg::models {
namespace {

// A profile with its own fit for Qwen2.5-7B's shape.
gpu::sim_profile fitted() {
  gpu::sim_profile p;
  p.models["qwen2.5-7b"] = {{0.01, 1e-4, 1e-8}, {0.005, 1e-6, 2e-4}, "measured"};
  return p;
}

TEST(SimCosts, AProfilesFitForTheShapeWinsOverTheRoofline) {
  const auto p = fitted();
  auto cfg = llama_config::synthetic("qwen2.5-7b");
  ASSERT_TRUE(cfg);
  const auto fit = sim_costs(p, *cfg, 15'000'000'000, 57344);
  EXPECT_EQ(fit.source, "measured");
  EXPECT_DOUBLE_EQ(fit.decode.c, 2e-4);
}

// Steps in a pool take `step_scale` times what they took alone: every term of either fit.
TEST(SimCosts, EveryStepCostTakesTheProfilesScale) {
  auto p = fitted();
  auto cfg = llama_config::synthetic("qwen2.5-7b");
  ASSERT_TRUE(cfg);
  const auto alone = sim_costs(p, *cfg, 15'000'000'000, 57344);
  const auto roofline_alone =
      sim_costs(p, *llama_config::synthetic("llama-3-8b"), 16'000'000'000, 1 << 17);
  p.step_scale = 1.5;
  const auto pooled = sim_costs(p, *cfg, 15'000'000'000, 57344);
  const auto roofline =
      sim_costs(p, *llama_config::synthetic("llama-3-8b"), 16'000'000'000, 1 << 17);
  for (const auto& [a, b] : {std::pair{alone.prefill, pooled.prefill},
                             {alone.decode, pooled.decode},
                             {roofline_alone.prefill, roofline.prefill},
                             {roofline_alone.decode, roofline.decode}}) {
    EXPECT_DOUBLE_EQ(b.a, 1.5 * a.a);
    EXPECT_DOUBLE_EQ(b.b, 1.5 * a.b);
    EXPECT_DOUBLE_EQ(b.c, 1.5 * a.c);
  }
}

// A decode step of a 7B model on an H800-like profile reads its 15 GB of weights at 80% of
// 3.35 TB/s: about 5.7 ms beside the fixed cost; each context token reads its K and V.
TEST(SimCosts, TheRooflineReadsTheWeightsOncePerStep) {
  gpu::sim_profile p;
  p.hbm_bytes_per_second = 3.35e12;
  p.bandwidth_efficiency = 0.8;
  p.step_seconds = 0.003;
  auto cfg = llama_config::synthetic("qwen2.5-7b");
  const std::size_t weights = 15'000'000'000, kv_per_token = 57344;
  const auto fit = sim_costs(p, *cfg, weights, kv_per_token);
  EXPECT_NEAR(fit.decode.a, 0.003 + 15e9 / (3.35e12 * 0.8), 1e-9);
  EXPECT_NEAR(fit.decode.b, kv_per_token / (3.35e12 * 0.8), 1e-15);
  EXPECT_GT(fit.prefill.b, 0);
  EXPECT_GT(fit.prefill.c, 0);
  EXPECT_NE(fit.source.find("roofline"), std::string::npos);
}

TEST(SimCosts, AStepAddsItsPromptsAndItsDecodesAndCountsTheFixedPartOnce) {
  const gpu::sim_model_fit fit{{0.01, 1e-3, 1e-6}, {0.005, 1e-5, 1e-3}, ""};
  const std::vector<std::int32_t> prompt(100, 1), one(1, 1);
  const std::vector<std::int32_t> blocks;
  // A 100-token prompt: 0.01 + 0.1 + 1e-6 · 100 · 100.
  std::vector<sequence_step> s{{prompt, 0, blocks, true, {}}};
  EXPECT_NEAR(sim_step_seconds(fit, s), 0.12, 1e-12);
  // Two decodes at contexts 50 and 150: 0.005 + 1e-5 · 200 + 1e-3 · 2.
  std::vector<sequence_step> d{{one, 49, blocks, true, {}}, {one, 149, blocks, true, {}}};
  EXPECT_NEAR(sim_step_seconds(fit, d), 0.009, 1e-12);
  // Both in one step: the decode fit's fixed part is not paid twice.
  s.insert(s.end(), d.begin(), d.end());
  EXPECT_NEAR(sim_step_seconds(fit, s), 0.12 + 0.004, 1e-12);
  // A fit with a negative intercept never makes a step take negative time.
  const gpu::sim_model_fit dip{{-0.5, 1e-3, 0}, {-0.5, 0, 0}, ""};
  EXPECT_EQ(sim_step_seconds(dip, d), 0);
}

} // namespace
} // namespace aeg::models
