// The simulated device: work completes at the points its costs give on the virtual clock, in
// order, and only when the clock is moved there.

#include "gpu/registry.hpp"
#include "gpu/sim/sim_cores.hpp"
#include "gpu/sim/sim_device.hpp"
#include "gpu/sim/sim_profile.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace aeg::gpu {
namespace {

using namespace std::chrono_literals;

double seconds(sim_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

struct SimDevice : ::testing::Test {
  std::shared_ptr<sim_clock> clock = std::make_shared<sim_clock>();
  std::shared_ptr<sim_profile> profile = [] {
    auto p = std::make_shared<sim_profile>();
    p->name = "T";
    p->memory_bytes = std::size_t{1} << 30;
    p->h2d_bytes_per_second = 1e9;
    p->d2h_bytes_per_second = 2e9;
    return p;
  }();
  std::shared_ptr<sim_device> dev = std::make_shared<sim_device>(clock, profile, 0);

  // When `ev` completes, once the clock is run to the end.
  double completion(event& ev) {
    double at = -1;
    ev.on_complete([&] { at = seconds(clock->now()); });
    while (auto next = clock->next())
      clock->advance_to(*next);
    return at;
  }
};

TEST(SimClock, RunsDueWorkInTimeOrderThenInTheOrderItWasScheduled) {
  sim_clock c;
  std::vector<std::string> ran;
  c.at(c.now() + 2s, [&] { ran.push_back("b"); });
  c.at(c.now() + 1s, [&] {
    ran.push_back("a");
    c.at(c.now() + 1s, [&] { ran.push_back("c"); }); // same point as b, scheduled later
  });
  c.at(c.now() + 5s, [&] { ran.push_back("d"); });
  EXPECT_EQ(c.advance_to(c.now() + 3s), 3u);
  EXPECT_EQ(ran, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_DOUBLE_EQ(seconds(c.now()), 3);
  ASSERT_TRUE(c.next());
  EXPECT_DOUBLE_EQ(seconds(*c.next()), 5);
}

TEST_F(SimDevice, ACopyTakesItsBytesOverTheLinkAndNothingCompletesUntilTheClockMoves) {
  auto s = dev->create_stream();
  auto ev = dev->create_event();
  ASSERT_TRUE(s && ev);
  ASSERT_TRUE((*s)->copy(nullptr, nullptr, 500'000'000, copy_kind::host_to_device));
  ASSERT_TRUE((*s)->record(**ev));
  EXPECT_FALSE((*ev)->query()); // no time has passed
  EXPECT_DOUBLE_EQ(completion(**ev), 0.5);
  EXPECT_TRUE((*ev)->query());
}

TEST_F(SimDevice, CopiesOneWayShareTheLinkAndTheOtherWayRunBeside) {
  auto a = dev->create_stream(), b = dev->create_stream(), c = dev->create_stream();
  auto ea = dev->create_event(), eb = dev->create_event(), ec = dev->create_event();
  ASSERT_TRUE((*a)->copy(nullptr, nullptr, 1'000'000'000, copy_kind::host_to_device));
  ASSERT_TRUE((*b)->copy(nullptr, nullptr, 1'000'000'000, copy_kind::host_to_device));
  ASSERT_TRUE((*c)->copy(nullptr, nullptr, 1'000'000'000, copy_kind::device_to_host));
  ASSERT_TRUE((*a)->record(**ea));
  ASSERT_TRUE((*b)->record(**eb));
  ASSERT_TRUE((*c)->record(**ec));
  double ta = -1, tb = -1, tc = -1;
  (*ea)->on_complete([&] { ta = seconds(clock->now()); });
  (*eb)->on_complete([&] { tb = seconds(clock->now()); });
  (*ec)->on_complete([&] { tc = seconds(clock->now()); });
  while (auto next = clock->next())
    clock->advance_to(*next);
  EXPECT_DOUBLE_EQ(ta, 1.0);
  EXPECT_DOUBLE_EQ(tb, 2.0); // behind a's copy on the same link
  EXPECT_DOUBLE_EQ(tc, 0.5); // the other direction, at its own rate
}

TEST_F(SimDevice, AStreamWaitingForAnEventStartsAfterIt) {
  auto copy = dev->create_stream(), compute = dev->create_stream();
  auto in = dev->create_event(), done = dev->create_event();
  ASSERT_TRUE((*copy)->copy(nullptr, nullptr, 250'000'000, copy_kind::host_to_device));
  ASSERT_TRUE((*copy)->record(**in));
  ASSERT_TRUE((*compute)->wait(**in));
  static_cast<sim_stream&>(**compute).busy(sim_seconds(0.1));
  bool called = false;
  ASSERT_TRUE((*compute)->host_callback([&] { called = true; }));
  ASSERT_TRUE((*compute)->record(**done));
  EXPECT_DOUBLE_EQ(completion(**done), 0.35);
  EXPECT_TRUE(called);
}

// Two devices on one host's cores: their steps share the cores as they go. Ends are rounded up
// to the clock's nanosecond each time the shares change.
constexpr double exact = 1e-8;

struct SharedCompute : SimDevice {
  std::shared_ptr<sim_cores> cores = std::make_shared<sim_cores>(clock);
  std::shared_ptr<sim_profile> cpu = [this] {
    auto p = std::make_shared<sim_profile>(*profile);
    p->shared_compute = true;
    return p;
  }();

  std::shared_ptr<sim_device> device(int ordinal) {
    return std::make_shared<sim_device>(clock, cpu, ordinal, 0, cores);
  }
  // `work` on a new stream of `dev`, and the point its end is written to once the clock runs.
  std::unique_ptr<stream> step(sim_device& dev, double work, double& ended, double after = 0) {
    auto s = dev.create_stream();
    auto ev = dev.create_event();
    EXPECT_TRUE(s && ev);
    if (after > 0)
      static_cast<sim_stream&>(**s).delay(sim_seconds(after));
    static_cast<sim_stream&>(**s).busy(sim_seconds(work));
    EXPECT_TRUE((*s)->record(**ev));
    std::shared_ptr<event> held = std::move(*ev);
    held->on_complete([this, held, &ended] { ended = seconds(clock->now()); });
    return std::move(*s);
  }
  void run_clock() {
    while (auto next = clock->next())
      clock->advance_to(*next);
  }
};

TEST_F(SharedCompute, TwoStepsAtOnceShareTheCoresAndBothTakeLonger) {
  auto a = device(0), b = device(1);
  double a_at = -1, b_at = -1;
  auto sa = step(*a, 1, a_at), sb = step(*b, 0.2, b_at);
  run_clock();
  EXPECT_NEAR(b_at, 0.4, exact); // half the cores while a's step runs
  EXPECT_NEAR(a_at, 1.2, exact); // every second of work done, the cores never idle
}

TEST_F(SharedCompute, AStepThatArrivesMidwaySharesFromThenOn) {
  auto a = device(0), b = device(1);
  double a_at = -1, b_at = -1;
  auto sa = step(*a, 0.5, a_at), sb = step(*b, 0.2, b_at, 0.1);
  run_clock();
  EXPECT_NEAR(b_at, 0.5, exact); // from 0.1 at half speed
  EXPECT_NEAR(a_at, 0.7, exact); // 0.1 alone, 0.4 at half, 0.2 alone
}

TEST_F(SharedCompute, ACopyWeighsItsShareAmongTheStepsWhileItRuns) {
  cpu->copy_compute_share = 0.5;
  auto a = device(0), b = device(1);
  double step_at = -1;
  auto sa = step(*a, 1, step_at);
  auto b_copy = b->create_stream();
  auto copied = b->create_event();
  ASSERT_TRUE((*b_copy)->copy(nullptr, nullptr, 750'000'000, copy_kind::host_to_device));
  ASSERT_TRUE((*b_copy)->record(**copied));
  EXPECT_NEAR(completion(**copied), 0.75, exact); // the link's time: the copy is not slowed
  EXPECT_NEAR(step_at, 1.25, exact);              // two thirds of the cores for 0.75 s
}

TEST_F(SharedCompute, ACopyInPiecesWeighsAsOneCopyAndNoMore) {
  cpu->copy_compute_share = 0.5;
  auto a = device(0), b = device(1);
  auto b_copy = b->create_stream();
  auto copied = b->create_event();
  for (int piece = 0; piece < 4; ++piece) // a model's layers, one copy each
    ASSERT_TRUE((*b_copy)->copy(nullptr, nullptr, 250'000'000, copy_kind::host_to_device));
  ASSERT_TRUE((*b_copy)->record(**copied));
  double step_at = -1;
  auto sa = step(*a, 0.2, step_at);
  EXPECT_NEAR(completion(**copied), 1.0, exact);
  EXPECT_NEAR(step_at, 0.3, exact);
}

TEST_F(SharedCompute, ADelayHoldsUpItsOwnStreamAndNoOtherDevice) {
  auto a = device(0), b = device(1);
  auto a_copy = a->create_stream();
  auto waited = a->create_event();
  static_cast<sim_stream&>(**a_copy).delay(sim_seconds(1));
  ASSERT_TRUE((*a_copy)->record(**waited));
  double b_at = -1;
  auto sb = step(*b, 0.2, b_at);
  EXPECT_NEAR(completion(**waited), 1.0, exact);
  EXPECT_NEAR(b_at, 0.2, exact);
}

TEST_F(SharedCompute, EachCallStartsWhenTheOneBeforeHasEnded) {
  auto d = device(0);
  auto copy = d->create_stream(), compute = d->create_stream();
  auto in = d->create_event(), done = d->create_event();
  ASSERT_TRUE((*copy)->copy(nullptr, nullptr, 250'000'000, copy_kind::host_to_device));
  ASSERT_TRUE((*copy)->record(**in));
  ASSERT_TRUE((*compute)->wait(**in));
  double reached = -1;
  auto& s = static_cast<sim_stream&>(**compute);
  s.when_reached([&](sim_clock::time_point t) { reached = seconds(t); });
  s.busy(sim_seconds(0.1));
  bool called = false;
  ASSERT_TRUE((*compute)->host_callback([&] { called = true; }));
  ASSERT_TRUE((*compute)->record(**done));
  EXPECT_EQ(reached, -1); // not known until the copy has ended
  EXPECT_NEAR(completion(**done), 0.35, exact);
  EXPECT_NEAR(reached, 0.25, exact);
  EXPECT_TRUE(called);
}

TEST_F(SharedCompute, AStreamThatGoesCompletesItsRecordsSoThatNothingWaitsForever) {
  auto d = device(0), other = device(1);
  auto ev = d->create_event(), after = other->create_event();
  auto waiting = other->create_stream();
  {
    auto s = d->create_stream();
    static_cast<sim_stream&>(**s).busy(sim_seconds(1));
    static_cast<sim_stream&>(**s).busy(sim_seconds(1));
    ASSERT_TRUE((*s)->record(**ev));
    ASSERT_TRUE((*waiting)->wait(**ev)); // another device's stream waits for the record
    ASSERT_TRUE((*waiting)->record(**after));
  }
  EXPECT_NEAR(completion(**ev), 0, exact); // at once: the work it followed went with its stream
  EXPECT_TRUE((*after)->query());
}

TEST_F(SharedCompute, AStreamWaitsForAnotherDevicesWorkBeforeItsOwn) {
  auto a = device(0), b = device(1);
  auto sa = a->create_stream(), sb = b->create_stream();
  auto stepped = a->create_event(), done = b->create_event();
  static_cast<sim_stream&>(**sa).busy(sim_seconds(0.5));
  ASSERT_TRUE((*sa)->record(**stepped));
  ASSERT_TRUE((*sb)->wait(**stepped));
  static_cast<sim_stream&>(**sb).busy(sim_seconds(0.2));
  ASSERT_TRUE((*sb)->record(**done));
  EXPECT_NEAR(completion(**done), 0.7, exact); // each had the cores to itself
}

TEST_F(SharedCompute, CopiesQueuedOnOneLinkWeighOnlyWhileEachRuns) {
  cpu->copy_compute_share = 0.5;
  auto a = device(0), b = device(1);
  double step_at = -1;
  auto sa = step(*a, 1, step_at);
  auto first = b->create_stream(), second = b->create_stream();
  ASSERT_TRUE((*first)->copy(nullptr, nullptr, 250'000'000, copy_kind::host_to_device));
  // Queued now behind the first on the link: it weighs from 0.25 s, when it starts.
  ASSERT_TRUE((*second)->copy(nullptr, nullptr, 250'000'000, copy_kind::host_to_device));
  run_clock();
  EXPECT_NEAR(step_at, 0.5 + (1 - 0.5 / 1.5), exact); // two thirds of the cores until 0.5 s
}

TEST_F(SharedCompute, AStreamOfADevicesOwnEnginesCannotWaitForWorkOnSharedCores) {
  auto shared = device(0);
  auto s = shared->create_stream(), own = dev->create_stream();
  auto ev = shared->create_event();
  static_cast<sim_stream&>(**s).busy(sim_seconds(1));
  ASSERT_TRUE((*s)->record(**ev));
  auto r = (*own)->wait(**ev);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_NE(r.error().message.find("same profile"), std::string::npos) << r.error().message;
}

TEST_F(SimDevice, MemoryIsCountedAgainstTheProfilesCapacity) {
  auto a = dev->allocate(std::size_t{768} << 20);
  ASSERT_TRUE(a);
  EXPECT_NE(a->data(), nullptr);
  auto b = dev->allocate(std::size_t{512} << 20);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, errc::out_of_memory);
  *a = buffer();
  EXPECT_EQ(dev->used_bytes(), 0u);
  EXPECT_TRUE(dev->allocate(std::size_t{1} << 30));
  EXPECT_EQ(dev->name(), "sim:0 (T)");
}

TEST(SimRegistry, ASimDeviceNeedsTheSimulationsClockAndProfile) {
  auto d = make_device({.backend = "sim"});
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, errc::invalid_argument);
  EXPECT_NE(d.error().message.find("aegaeon simulate"), std::string::npos);
  auto ok = make_device({.backend = "sim",
                         .clock = std::make_shared<sim_clock>(),
                         .profile = std::make_shared<sim_profile>()});
  ASSERT_TRUE(ok);
  EXPECT_EQ((*ok)->kind(), backend_kind::sim);
}

TEST(SimProfile, RoundTripsThroughJson) {
  sim_profile p;
  p.name = "X";
  p.h2d_bytes_per_second = 3e10;
  p.weight_layout = "cpu";
  p.copy_compute_share = 0.25;
  p.step_scale = 1.4;
  p.models["qwen2.5-7b"] = {{0.01, 2e-5, 1e-9}, {-0.002, 1e-6, 3e-4}, "fit"};
  auto back = parse_sim_profile(to_json(p), "p.json");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->name, "X");
  EXPECT_EQ(back->weight_layout, "cpu");
  EXPECT_DOUBLE_EQ(back->copy_compute_share, 0.25);
  EXPECT_DOUBLE_EQ(back->step_scale, 1.4);
  EXPECT_DOUBLE_EQ(back->h2d_bytes_per_second, 3e10);
  ASSERT_EQ(back->models.count("qwen2.5-7b"), 1u);
  EXPECT_DOUBLE_EQ(back->models["qwen2.5-7b"].decode.a, -0.002); // fits may dip below zero
  EXPECT_DOUBLE_EQ(back->models["qwen2.5-7b"].prefill.c, 1e-9);
}

TEST(SimProfile, ErrorsNameTheField) {
  auto expect_error = [](const std::string& json, const std::string& says) {
    auto p = parse_sim_profile(json, "p.json");
    ASSERT_FALSE(p) << json;
    EXPECT_NE(p.error().message.find(says), std::string::npos) << p.error().message;
  };
  expect_error("{", "p.json: not JSON");
  expect_error("{}", "\"name\"");
  expect_error(R"({"name": "G", "h2d_bytes_per_second": 0})", "p.json.h2d_bytes_per_second");
  expect_error(R"({"name": "G", "flops": "fast"})", "p.json.flops: must be a number > 0");
  expect_error(R"({"name": "G", "weight_layout": "int4"})", "weight_layout");
  expect_error(R"({"name": "G", "copy_compute_share": 0})",
               "copy_compute_share: must be a number > 0");
  expect_error(R"({"name": "G", "copy_compute_share": 2})", "copy_compute_share: at most 1");
  expect_error(R"({"name": "G", "step_scale": 0})", "step_scale: must be a number > 0");
  expect_error(R"({"name": "G", "models": {"m": {"prefill": {}}}})", "p.json.models.m");
  expect_error(R"({"name": "G", "models": {"m": {"prefill": {"a": "x"}, "decode": {}}}})",
               "p.json.models.m.prefill.a");
  EXPECT_EQ(read_sim_profile("/nonexistent/p.json").error().code, errc::not_found);
}

TEST(SimProfile, EveryPublishedProfileReads) {
  std::size_t read = 0;
  for (const auto& f : std::filesystem::directory_iterator(AEG_SOURCE_DIR "/profiles")) {
    auto p = read_sim_profile(f.path().string());
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_FALSE(p->source.empty()) << f.path() << " must say where its numbers come from";
    ++read;
  }
  EXPECT_GE(read, 5u);
}

TEST(SimProfileFit, FindsTheCostThatMadeTheSteps) {
  const linear_cost truth{0.004, 5e-4, 3e-7};
  std::vector<cost_sample> steps;
  for (const double n : {16.0, 64.0, 256.0, 1024.0})
    for (const double share : {1.0, 0.5})
      steps.push_back({n, n * n * share, truth.at(n, n * n * share)});
  const auto fit = fit_relative(steps);
  ASSERT_TRUE(fit) << fit.error().message;
  EXPECT_NEAR(fit->a, truth.a, 1e-6 * truth.a);
  EXPECT_NEAR(fit->b, truth.b, 1e-6 * truth.b);
  EXPECT_NEAR(fit->c, truth.c, 1e-6 * truth.c);
  EXPECT_LT(worst_relative_error(*fit, steps), 1e-6);
}

TEST(SimProfileFit, ShortStepsKeepTheirCostWhereAPlainFitWouldMakeThemFree) {
  // 1 ms a step, a token's cost doubling past 128 tokens (as a working set outgrows a cache):
  // the least squares of absolute seconds through these has an intercept of -9.9 ms and costs
  // the 16-token step below zero, so free.
  std::vector<cost_sample> steps;
  for (const double n : {16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0})
    steps.push_back(
        {n, n * n, (n <= 128 ? 0.001 + 3e-4 * n : 0.001 + 6e-4 * n - 0.0384) + 2e-7 * n * n});
  const auto fit = fit_relative(steps);
  ASSERT_TRUE(fit) << fit.error().message;
  EXPECT_GE(fit->a, 0);
  EXPECT_GE(fit->b, 0);
  EXPECT_GE(fit->c, 0);
  EXPECT_LT(worst_relative_error(*fit, steps), 0.2); // 15%: no step is far off
  EXPECT_GT(fit->at(16, 256), 0.8 * steps.front().seconds);
}

TEST(SimProfileFit, NoTermBelowZeroEvenWhereTheStepsLieOnSuchALine) {
  // These lie exactly on -10 ms + 1 ms per token: the best fit with every term >= 0 is chosen
  // instead, so no step costs below zero.
  std::vector<cost_sample> steps;
  for (const double n : {20.0, 50.0, 100.0, 200.0})
    steps.push_back({n, 0, -0.01 + 0.001 * n});
  const auto fit = fit_relative(steps);
  ASSERT_TRUE(fit) << fit.error().message;
  EXPECT_GE(fit->a, 0);
  EXPECT_GE(fit->b, 0);
  EXPECT_GE(fit->c, 0);
  EXPECT_GT(fit->b, 0); // the tokens still cost
}

TEST(SimProfileFit, RefusesTooFewOrImpossibleSteps) {
  EXPECT_FALSE(fit_relative(std::vector<cost_sample>{{1, 1, 0.1}, {2, 4, 0.2}}));
  const auto zero = fit_relative(std::vector<cost_sample>{{1, 1, 0.1}, {2, 4, 0}, {3, 9, 0.3}});
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().message.find("time > 0"), std::string::npos) << zero.error().message;
}

} // namespace
} // namespace aeg::gpu
