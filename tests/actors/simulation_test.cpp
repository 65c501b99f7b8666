#include "actors/instance_state.hpp"
#include "actors/simulation.hpp"
#include "models/llama/weights.hpp"
#include "models/sim_costs.hpp"
#include "tests/actors/sim_pool.hpp"

#include <gtest/gtest.h>

#include <numeric>

namespace aeg::actors {
namespace {

std::vector<trace_request> arrivals(std::size_t models, std::size_t n) {
  std::vector<trace_request> out;
  for (std::size_t i = 0; i < n; ++i)
    out.push_back({0.37 * static_cast<double>(i), "m" + std::to_string(i % models),
                   50 + (i * 97) % 900, 16 + (i * 53) % 300});
  return out;
}

TEST(Simulation, EveryRequestEndsWithTheTokensItAskedFor) {
  const auto trace = arrivals(4, 60);
  auto r = simulate(sim_pool(3, 1, 4), trace);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rejected, 0U) << r->first_rejection;
  ASSERT_EQ(r->metrics.finished.size(), trace.size());
  for (const auto& f : r->metrics.finished) {
    EXPECT_EQ(f.reason, finish_reason::length) << f.message;
    EXPECT_EQ(f.token_times.size(), trace[f.id].output_tokens) << "request " << f.id;
  }
  for (const auto& s : r->instances) {
    EXPECT_EQ(s.kv_bytes_used, 0U);
    EXPECT_EQ(s.running + s.waiting, 0U);
  }
  EXPECT_GT(r->simulated_seconds, trace.back().arrival);
}

// An instance keeps its view of itself from step to step and rewrites only what changed; here
// every step's view is also checked against one built from scratch, through switches, hand-offs
// and KV swaps on devices with little room for KV.
TEST(Simulation, EveryStepsKeptViewMatchesItsInstance) {
  auto spec = sim_pool(3, 1, 3);
  for (auto& d : spec.devices)
    d.memory_bytes = std::size_t{20} << 30; // a 15 GB model and a few GB of KV
  std::vector<trace_request> trace;
  for (std::size_t i = 0; i < 90; ++i)
    trace.push_back({0.05 * static_cast<double>(i), "m" + std::to_string(i % 3),
                     1000 + (i * 397) % 3000, 200 + (i * 53) % 600});
  instance_state::check_views(true);
  auto r = simulate(spec, trace);
  instance_state::check_views(false);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->metrics.finished.size(), trace.size());
  for (const auto& f : r->metrics.finished)
    EXPECT_EQ(f.reason, finish_reason::length) << f.message;
  std::size_t swaps = 0;
  for (const auto& st : r->instances)
    swaps += st.swaps_out + st.preemptions + st.batch_splits;
  EXPECT_GT(swaps, 0U) << "the devices had room for every request's KV: no pressure was tested";
}

// Within a turn of the weighted round-robin its decision stands, and the instance runs the same
// decode step again without asking the policy or making a view and a plan. That changes nothing:
// the same events, to the nanosecond, as a run that asks and plans at every step, where each
// standing decision and each step that would have been repeated is checked against the fresh one.
// Returns the steps repeated and all steps.
std::pair<std::size_t, std::size_t>
expect_standing_changes_nothing(const pool_spec& spec, const std::vector<trace_request>& trace) {
  simulation_options o;
  o.log_events = true;
  auto fast = simulate(spec, trace, o);
  instance_state::check_views(true);
  auto checked = simulate(spec, trace, o);
  instance_state::check_views(false);
  EXPECT_TRUE(fast) << fast.error().message;
  EXPECT_TRUE(checked) << checked.error().message;
  if (!fast || !checked)
    return {0, 0};
  EXPECT_EQ(fast->metrics.finished.size(), trace.size());
  for (const auto& f : checked->metrics.finished)
    EXPECT_EQ(f.reason, finish_reason::length) << f.message;
  std::size_t steps = 0, repeated = 0, verified = 0;
  for (const auto& s : fast->instances) {
    steps += s.steps;
    repeated += s.steps_repeated;
  }
  for (const auto& s : checked->instances)
    verified += s.steps_repeated;
  EXPECT_EQ(repeated, verified);
  EXPECT_EQ(fast->events, checked->events);
  return {repeated, steps};
}

TEST(Simulation, DecisionsThatStandAndRepeatedStepsChangeNothing) {
  std::vector<trace_request> trace;
  for (std::size_t i = 0; i < 80; ++i)
    trace.push_back({0.2 * static_cast<double>(i), "m" + std::to_string(i % 4),
                     100 + (i * 97) % 700, 50 + (i * 53) % 400});
  const auto [repeated, steps] = expect_standing_changes_nothing(sim_pool(4, 1, 4), trace);
  EXPECT_GT(repeated, steps / 4) << "few steps repeated: the fast path was hardly tested";
}

// The same under KV pressure: swaps, batches split, requests preempted, KV arriving.
TEST(Simulation, DecisionsThatStandChangeNothingUnderKvPressure) {
  auto spec = sim_pool(3, 1, 4);
  for (auto& d : spec.devices)
    d.memory_bytes = std::size_t{17} << 30; // a 15 GB model and 2 GB of KV
  std::vector<trace_request> trace;
  for (std::size_t i = 0; i < 90; ++i)
    trace.push_back({0.05 * static_cast<double>(i), "m" + std::to_string(i % 4),
                     1000 + (i * 397) % 3000, 200 + (i * 53) % 600});
  const auto [repeated, steps] = expect_standing_changes_nothing(spec, trace);
  EXPECT_GT(repeated, 0U);
  EXPECT_LT(repeated, steps);
}

TEST(Simulation, SameSeedSameEvents) {
  const auto trace = arrivals(5, 40);
  simulation_options o;
  o.log_events = true;
  auto a = simulate(sim_pool(4, 1, 5), trace, o);
  auto b = simulate(sim_pool(4, 1, 5), trace, o);
  ASSERT_TRUE(a && b);
  ASSERT_FALSE(a->events.empty());
  EXPECT_EQ(a->events, b->events);
}

// CPU devices share the host's cores: each step shares them with the other device's steps in
// progress. Every request still ends as asked, the same seed gives the same events, and steps
// take longer than on devices with engines of their own.
TEST(Simulation, DevicesSharingCoresServeEveryRequestAndRepeatThemselves) {
  const auto trace = arrivals(4, 40);
  auto shared = sim_pool(2, 0, 4);
  auto cpu = std::make_shared<gpu::sim_profile>(*shared.sim_profile);
  cpu->shared_compute = true;
  cpu->copy_compute_share = 0.5;
  shared.sim_profile = cpu;
  simulation_options o;
  o.log_events = true;
  auto a = simulate(shared, trace, o);
  auto b = simulate(shared, trace, o);
  auto own = simulate(sim_pool(2, 0, 4), trace, o);
  ASSERT_TRUE(a && b && own);
  ASSERT_FALSE(a->events.empty());
  EXPECT_EQ(a->events, b->events);
  ASSERT_EQ(a->metrics.finished.size(), trace.size());
  for (const auto& f : a->metrics.finished)
    EXPECT_EQ(f.token_times.size(), trace[f.id].output_tokens) << "request " << f.id;
  const auto per_step = [](const simulation_report& r) {
    double seconds = 0;
    std::size_t steps = 0;
    for (const auto& s : r.instances) {
      EXPECT_EQ(s.kv_bytes_used, 0U);
      seconds += s.step_seconds;
      steps += s.steps;
    }
    return seconds / static_cast<double>(steps);
  };
  EXPECT_GT(per_step(*a), per_step(*own));
}

// Virtual time is exact: a lone request on a cold device waits for its model to be copied in (the
// profile's fixed switch cost, then the image at the link's rate), and each later token takes
// one decode step of the profile's cost at its context.
TEST(Simulation, TokensComeWhenTheProfilesCostsSay) {
  auto spec = sim_pool(1, 0, 1);
  auto profile = std::make_shared<gpu::sim_profile>(*spec.sim_profile);
  profile->switch_seconds = 0.05;
  spec.sim_profile = profile;
  const auto cfg = *models::llama_config::synthetic("qwen2.5-7b");
  const auto format = models::compute_format::for_backend(gpu::backend_kind::sim);
  const std::size_t image = models::plan_synthetic(cfg, format).total_bytes;
  const auto fit = models::sim_costs(*profile, cfg, image,
                                     cfg.kv(format.kv_type()).block_bytes() /
                                         kernels::kv_geometry::block_tokens);
  const std::vector<trace_request> one{{0, "m0", 100, 8}};
  auto r = simulate(spec, one);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->metrics.finished.size(), 1u);
  const auto& t = r->metrics.finished.front().token_times;
  ASSERT_EQ(t.size(), 8u);
  const double copied = 0.05 + static_cast<double>(image) / profile->h2d_bytes_per_second;
  const double prefill = fit.prefill.at(100, 100 * 100);
  EXPECT_GE(t[0], copied);
  EXPECT_LE(t[0], copied + prefill + 1e-6);
  double decoding = 0;
  for (std::size_t k = 1; k < t.size(); ++k) {
    EXPECT_NEAR(t[k] - t[k - 1], fit.decode.at(static_cast<double>(100 + k), 1), 1e-6)
        << "token " << k;
    decoding += fit.decode.at(static_cast<double>(100 + k), 1);
  }
  const auto& stats = r->instances.front();
  EXPECT_EQ(stats.switches, 1u);
  // Its steps' time: the prompt's step (from its enqueueing, so with the wait for the weights
  // it was enqueued behind) and seven decode steps of one sequence.
  EXPECT_EQ(stats.steps, 8u);
  EXPECT_EQ(stats.decode_steps, 7u);
  EXPECT_EQ(stats.decode_sequences, 7u);
  EXPECT_NEAR(stats.decode_step_seconds, decoding, 1e-6);
  EXPECT_GE(stats.step_seconds, decoding + prefill - 1e-6);
  EXPECT_LE(stats.step_seconds, t.back() + 1e-6);
}

// A device that is not simulated has no place in a simulation.
TEST(Simulation, RefusesDevicesThatAreNotSimulated) {
  auto spec = sim_pool(1, 0, 1);
  spec.devices.front().backend = "cpu";
  auto r = simulate(spec, arrivals(1, 1));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("'sim'"), std::string::npos) << r.error().message;
  spec.sim_profile = nullptr;
  EXPECT_FALSE(simulate(spec, arrivals(1, 1)));
}

// A pool that cannot start on its simulated devices is an error that says why, and the
// simulation's actor system still shuts down (nothing runs on the test scheduler unless driven).
TEST(Simulation, APoolThatDoesNotFitIsAnErrorNotAHang) {
  auto spec = sim_pool(2, 0, 2);
  auto small = std::make_shared<gpu::sim_profile>(*spec.sim_profile);
  small->memory_bytes = std::size_t{4} << 30; // a 7B model's weights alone take 15 GB
  spec.sim_profile = small;
  auto r = simulate(spec, arrivals(2, 4));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("MiB"), std::string::npos) << r.error().message;
}

} // namespace
} // namespace aeg::actors
