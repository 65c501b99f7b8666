// The paper's baselines in virtual time: ServerlessLLM's scale-up threshold and replica limit
// (QS, R) and its LRU choice of a device, and MuxServe's two resident models per device.

#include "actors/simulation.hpp"
#include "models/llama/weights.hpp"
#include "models/sim_costs.hpp"
#include "tests/actors/sim_pool.hpp"

#include <gtest/gtest.h>

namespace aeg::actors {
namespace {

pool_spec pool(std::size_t devices, std::size_t models, routing route) {
  return sim_pool(devices, 0, models, route);
}

// Eight requests of one model arrive before any can end (the first waits for its model to be
// copied in): with the artifact's R=1 they all queue on the one device the model took; with
// R=2 and QS=4 the sixth, arriving when the first device holds five (more than QS), starts a
// second replica, and the last two join it (the replica holding fewer).
TEST(SimulatedServerlessLlm, AModelScalesOutOnlyPastTheQueueThresholdAndUpToItsReplicas) {
  std::vector<trace_request> burst;
  for (std::size_t i = 0; i < 8; ++i)
    burst.push_back({0.01 * static_cast<double>(i), "m0", 50, 100 + i});
  const std::size_t first_five = 100 + 101 + 102 + 103 + 104, last_three = 105 + 106 + 107;
  auto limited = pool(2, 1, routing::request_level);
  ASSERT_EQ(limited.policy.scale_queue, 4u);  // the artifact's QS
  ASSERT_EQ(limited.policy.max_replicas, 1u); // and R
  auto one = simulate(limited, burst);
  ASSERT_TRUE(one) << one.error().message;
  ASSERT_EQ(one->metrics.finished.size(), 8u);
  EXPECT_EQ(one->instances[0].tokens_generated, first_five + last_three);
  EXPECT_EQ(one->instances[1].tokens_generated, 0u);
  EXPECT_EQ(one->instances[1].switches, 0u);

  auto two_replicas = pool(2, 1, routing::request_level);
  two_replicas.policy.max_replicas = 2;
  auto two = simulate(two_replicas, burst);
  ASSERT_TRUE(two) << two.error().message;
  ASSERT_EQ(two->metrics.finished.size(), 8u);
  EXPECT_EQ(two->instances[0].tokens_generated, first_five);
  EXPECT_EQ(two->instances[1].tokens_generated, last_three);
}

// A model without a replica takes an idle device that last ran it (still loaded there), else the
// least recently used one: m0, m1, then m0 again each load once, where the lowest idle device
// would have loaded m0, m1 and m0 again on the first.
TEST(SimulatedServerlessLlm, AnIdleModelReturnsToItsWarmDeviceAndANewOneTakesTheLruDevice) {
  const std::vector<trace_request> trace{{0, "m0", 50, 4}, {5, "m1", 50, 4}, {10, "m0", 50, 4}};
  auto r = simulate(pool(2, 2, routing::request_level), trace);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->metrics.finished.size(), 3u);
  EXPECT_EQ(r->instances[0].switches, 1u);
  EXPECT_EQ(r->instances[1].switches, 1u);
  EXPECT_EQ(r->instances[0].tokens_generated, 8u);
}

// MuxServe's device: m0 and m1 both placed on it.
pool_spec muxserve_device(bool keep_resident) {
  auto s = pool(1, 2, routing::dedicated);
  s.instances[0].models = {"m0", "m1"};
  s.policy.decode = "muxserve";
  s.policy.keep_resident = keep_resident;
  return s;
}

// Both placed models stay resident: after each is copied in once, the two take alternate steps
// and every switch between them is free, so each token of one comes one decode step of each
// model after the last (virtual time exact to the microsecond), and no weights move again.
// Without residency the same alternation copies a model in at every switch.
TEST(SimulatedMuxServe, TwoResidentModelsSwitchAtNoCostStepByStep) {
  const std::vector<trace_request> trace{{0, "m0", 100, 64}, {0, "m1", 100, 64}};
  const auto spec = muxserve_device(true);
  auto r = simulate(spec, trace);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rejected, 0u) << r->first_rejection;
  ASSERT_EQ(r->metrics.finished.size(), 2u);
  const auto cfg = *models::llama_config::synthetic("qwen2.5-7b");
  const auto format = models::compute_format::for_backend(gpu::backend_kind::sim);
  const std::size_t image = models::plan_synthetic(cfg, format).total_bytes;
  const auto fit = models::sim_costs(*spec.sim_profile, cfg, image,
                                     cfg.kv(format.kv_type()).block_bytes() /
                                         kernels::kv_geometry::block_tokens);
  const auto& s = r->instances.front();
  EXPECT_EQ(s.weight_bytes_copied, 2 * image);
  EXPECT_GE(s.switches, 2 * 63u);          // a switch at every step
  EXPECT_EQ(s.prefetches + 2, s.switches); // all but the two first loads found it resident
  for (const auto& f : r->metrics.finished) {
    ASSERT_EQ(f.token_times.size(), 64u);
    for (std::size_t k = 3; k < 64; ++k) {
      const double step = fit.decode.at(static_cast<double>(100 + k), 1);
      EXPECT_NEAR(f.token_times[k] - f.token_times[k - 1], 2 * step, 1e-6)
          << f.model << " token " << k;
    }
  }
  auto copied_again = simulate(muxserve_device(false), trace);
  ASSERT_TRUE(copied_again) << copied_again.error().message;
  EXPECT_GT(copied_again->instances.front().weight_bytes_copied, 10 * image);
}

// A model its placement left out is served by no instance: its requests are refused at once,
// with a reason, and counted; the placed model's are served.
TEST(SimulatedMuxServe, AnUnplacedModelsRequestsAreRefusedWithAReason) {
  auto spec = muxserve_device(true);
  spec.models.push_back(spec.models.back());
  spec.models.back().name = "left-out";
  const std::vector<trace_request> trace{
      {0, "m0", 50, 8}, {0.5, "left-out", 50, 8}, {1, "left-out", 50, 8}};
  auto r = simulate(spec, trace);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rejected, 2u);
  EXPECT_NE(r->first_rejection.find("'left-out' is placed on no instance"), std::string::npos)
      << r->first_rejection;
  ASSERT_EQ(r->metrics.finished.size(), 1u);
  EXPECT_EQ(r->metrics.finished.front().token_times.size(), 8u);
}

} // namespace
} // namespace aeg::actors
