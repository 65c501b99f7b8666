#include "actors/simulation.hpp"
#include "models/llama/weights.hpp"
#include "models/sim_costs.hpp"
#include "tests/actors/sim_pool.hpp"

#include <gtest/gtest.h>

namespace aeg::actors {
namespace {

// A profile whose scale-ups take 50 ms plus the copy.
pool_spec slow_switch_pool(std::size_t devices, std::size_t prefill, std::size_t models) {
  return sim_pool(devices, prefill, models, routing::aegaeon, 0.05);
}

double prefill_sum(const service_times& s) {
  return s.prefill_execute + s.prefill_kv_wait + s.prefill_held;
}
double decode_sum(const service_times& s) {
  return s.decode_execute + s.decode_kv_wait + s.decode_held;
}

// A lone request on one colocated device: its prompt's step costs what the profile says, held
// while the cold model's weights come in; each later token is one decode step of the profile's
// cost, and nothing waits for KV.
TEST(ServiceTimes, ExecutionIsTheProfilesStepCosts) {
  const auto spec = slow_switch_pool(1, 0, 1);
  const auto cfg = *models::llama_config::synthetic("qwen2.5-7b");
  const auto format = models::compute_format::for_backend(gpu::backend_kind::sim);
  const std::size_t image = models::plan_synthetic(cfg, format).total_bytes;
  const auto fit = models::sim_costs(*spec.sim_profile, cfg, image,
                                     cfg.kv(format.kv_type()).block_bytes() /
                                         kernels::kv_geometry::block_tokens);
  const std::vector<trace_request> one{{0, "m0", 100, 8}};
  auto r = simulate(spec, one);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->metrics.finished.size(), 1u);
  const auto& m = r->metrics.finished.front();
  const auto& s = m.service;
  EXPECT_NEAR(s.prefill_execute, fit.prefill.at(100, 100 * 100), 1e-6);
  double decode = 0;
  for (std::size_t k = 1; k < 8; ++k)
    decode += fit.decode.at(static_cast<double>(100 + k), 1);
  EXPECT_NEAR(s.decode_execute, decode, 1e-6);
  // The prompt's step waited for the weights: the copy's end less the compute it overlapped.
  const double copied = 0.05 + static_cast<double>(image) / spec.sim_profile->h2d_bytes_per_second;
  EXPECT_GT(s.prefill_held, 0);
  EXPECT_LE(s.prefill_held, copied);
  EXPECT_EQ(s.prefill_kv_wait, 0);
  EXPECT_EQ(s.decode_kv_wait, 0);
  EXPECT_NEAR(s.decode_held, 0, 1e-9);
  // Nothing else ran: its steps are its whole latency, phase by phase.
  ASSERT_EQ(m.token_times.size(), 8u);
  EXPECT_NEAR(prefill_sum(s), m.token_times.front(), 1e-6);
  EXPECT_NEAR(decode_sum(s), m.end_seconds - m.token_times.front(), 1e-6);
}

// Under load on a disaggregated pool, the steps a request was in never add up to more than the
// phase they fall in (no step counted twice, none charged to the wrong phase), and hand-offs
// show as KV waits on the decode side.
TEST(ServiceTimes, StepsFitInsideEachPhaseAndHandOffsWaitForKv) {
  std::vector<trace_request> trace;
  for (std::size_t i = 0; i < 60; ++i)
    trace.push_back({0.37 * static_cast<double>(i), "m" + std::to_string(i % 4),
                     50 + (i * 97) % 900, 16 + (i * 53) % 300});
  auto r = simulate(slow_switch_pool(3, 1, 4), trace);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->metrics.finished.size(), trace.size());
  double kv_waits = 0, prefill_held = 0;
  for (const auto& m : r->metrics.finished) {
    const auto& s = m.service;
    ASSERT_FALSE(m.token_times.empty());
    for (const double v : {s.prefill_execute, s.prefill_kv_wait, s.prefill_held, s.decode_execute,
                           s.decode_kv_wait, s.decode_held})
      EXPECT_GE(v, 0) << "request " << m.id;
    EXPECT_GT(s.prefill_execute, 0) << "request " << m.id;
    EXPECT_GT(s.decode_execute, 0) << "request " << m.id;
    EXPECT_LE(prefill_sum(s), m.token_times.front() + 1e-9) << "request " << m.id;
    EXPECT_LE(decode_sum(s), m.end_seconds - m.token_times.front() + 1e-9) << "request " << m.id;
    EXPECT_GE(m.end_seconds, m.token_times.back()) << "request " << m.id;
    kv_waits += s.decode_kv_wait;
    prefill_held += s.prefill_held;
  }
  EXPECT_GT(kv_waits, 0);     // the decode side swaps each hand-off's KV in
  EXPECT_GT(prefill_held, 0); // the prefill device switches models between prompts
}

} // namespace
} // namespace aeg::actors
