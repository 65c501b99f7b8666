// The prefill queue and decode placement (Algorithm 1 and its dispatch), the latency estimators
// and the deadline rule: plain, deterministic C++ tested without actors.

#include "actors/sched/deadlines.hpp"
#include "actors/sched/estimators.hpp"
#include "actors/sched/prefill_queue.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace aeg::sched {
namespace {

using namespace std::chrono_literals;

// Instances of nodes that serve different models: a request joins or starts a group only on an
// instance that serves its model, and none serving it queues nothing.
TEST(PrefillQueue, ARequestGoesOnlyToInstancesThatServeItsModel) {
  prefill_queue q(3, 8, [](const std::string&) { return seconds{1.0}; });
  q.set_serves([](std::size_t i, const std::string& m) { return m == "a" ? i != 0 : i == 0; });
  const prefill_queue::estimate e{seconds{0.1}};
  EXPECT_EQ(q.add(1, "b", e), 0u); // only instance 0 serves b
  EXPECT_EQ(q.add(2, "b", e), 0u);
  EXPECT_EQ(q.add(3, "a", e), 1u); // 1 and 2 serve a; 0 is idle-less but serves no a
  EXPECT_EQ(q.add(4, "a", e), 1u); // joins a's group
  q.drain(1);
  q.drain(2);
  EXPECT_EQ(q.add(5, "a", e), prefill_queue::no_instance); // nobody left serves a
  EXPECT_EQ(q.size(0), 2u);
}

// What follows a lane (its node's decode side) counts with its queued work: a node that must
// scale the model up loses to an idle one that need not, until its own queue costs more.
TEST(PrefillQueue, TheDecodeSideCostCountsWithTheQueuedWork) {
  prefill_queue q(3, 1, [](const std::string&) { return seconds{1.0}; });
  std::vector<double> after = {0.5, 0.0, 0.0};
  q.set_after([&](std::size_t i, const std::string&) { return seconds{after[i]}; });
  const prefill_queue::estimate e{seconds{0.1}};
  EXPECT_EQ(q.add(1, "a", e), 1u); // 1 and 2 tie at nothing after: the lower index
  EXPECT_EQ(q.add(2, "b", e), 2u); // 1 has 1.1 s queued; 2 is idle
  EXPECT_EQ(q.add(3, "c", e), 0u); // 0's 0.5 s after beats the others' 1.1 s queued
  after = {5.0, 0.0, 0.0};
  EXPECT_EQ(q.add(4, "d", e), 1u); // 0 now costs 6.1 s, 1 and 2 1.1 s: the lower index
}

TEST(PrefillQueue, GroupsFillUpToEightThenANewGroupGoesToTheLeastLoadedInstance) {
  prefill_queue q(2, 8, [](const std::string&) { return seconds{1.0}; });
  const prefill_queue::estimate e{seconds{0.1}};
  // Per request: (id, model) -> expected instance.
  const std::vector<std::tuple<std::uint64_t, std::string, std::size_t>> table = {
      {1, "a", 0}, // new group a on instance 0 (both idle: the first)
      {2, "b", 1}, // new group b on instance 1 (instance 0 has 1.1 s of work)
      {3, "a", 0}, // joins a's group
      {4, "a", 0},  {5, "a", 0}, {6, "a", 0},
      {7, "a", 0},  {8, "a", 0}, {9, "a", 0}, // the 8th of group a
      {10, "a", 1}, // a's group is full: a new group where the work is least (instance 1)
      {11, "c", 0}, // instance 0: 1 s + 8 × 0.1 = 1.8 s; instance 1: b and a, 2 × 1.1 = 2.2 s
  };
  for (const auto& [id, model, expected] : table)
    EXPECT_EQ(q.add(id, model, e), expected) << "request " << id;
  EXPECT_EQ(q.groups(0), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(q.groups(1), (std::vector<std::string>{"b", "a"}));
  // One request per prefill batch, front group first.
  std::vector<std::uint64_t> order;
  while (auto id = q.next(1))
    order.push_back(*id);
  EXPECT_EQ(order, (std::vector<std::uint64_t>{2, 10}));
  EXPECT_TRUE(q.remove(5)); // a cancel while queued
  EXPECT_FALSE(q.remove(5));
  EXPECT_EQ(q.size(0), 8u);
  EXPECT_EQ(q.drain(0).size(), 8u);
}

// Requests an instance was handed (the running one and the next, kept there so no round trip
// separates them) are work it has: an idle instance is less loaded than a busy one.
TEST(PrefillQueue, RequestsHandedToAnInstanceCountInItsWork) {
  prefill_queue q(2, 8, [](const std::string&) { return seconds{1.0}; });
  const prefill_queue::estimate e{seconds{0.1}};
  EXPECT_EQ(q.add(1, "a", e), 0u);
  EXPECT_EQ(q.next(0), 1u);
  EXPECT_NEAR(q.work(0).count(), 1.1, 1e-12); // a's switch and prefill, though none is queued
  EXPECT_EQ(q.add(2, "b", e), 1u);            // the idle instance, not the busy first one
  EXPECT_EQ(q.next(1), 2u);
  q.finish(1); // a's prefill is done, and a is active on instance 0
  EXPECT_NEAR(q.work(0).count(), 0.0, 1e-12);
  // Per request: (id, model) -> expected instance, and instance 0's work after it.
  const std::vector<std::tuple<std::uint64_t, std::string, std::size_t, double>> table = {
      {3, "a", 0, 0.1}, // a new group of the active model: no switch
      {4, "c", 0, 1.2}, // instance 0: 0.1 s; instance 1: b's 1.1 s
      {5, "d", 1, 1.2}, // instance 0: 1.2 s; instance 1: 1.1 s
  };
  for (const auto& [id, model, expected, work] : table) {
    EXPECT_EQ(q.add(id, model, e), expected) << "request " << id;
    EXPECT_NEAR(q.work(0).count(), work, 1e-12) << "request " << id;
  }
  EXPECT_EQ(q.drain(1), (std::vector<std::uint64_t>{5})); // instance 1 goes: b is forgotten
  EXPECT_NEAR(q.work(1).count(), 0.0, 1e-12);
}

// An instance that went away has no work left, yet nothing will ever run there: requests go to
// the instances that remain, even busy ones.
TEST(PrefillQueue, ADrainedInstanceIsNeverChosenAgain) {
  prefill_queue q(3, 8, [](const std::string&) { return seconds{1.0}; });
  const prefill_queue::estimate e{seconds{0.1}};
  EXPECT_EQ(q.add(1, "a", e), 0u);
  EXPECT_EQ(q.add(2, "b", e), 1u);
  EXPECT_EQ(q.add(3, "c", e), 2u);
  EXPECT_EQ(q.drain(0), (std::vector<std::uint64_t>{1}));
  // Instance 0 is now the least loaded (no work at all) but gone.
  EXPECT_EQ(q.add(1, "a", e), 1u); // re-placed: instances 1 and 2 tie, the first wins
  EXPECT_EQ(q.add(4, "d", e), 2u);
  EXPECT_EQ(q.add(5, "a", e), 1u); // joins a's group
  EXPECT_EQ(q.size(0), 0u);
  EXPECT_EQ(q.drain(1), (std::vector<std::uint64_t>{2, 1, 5}));
  for (std::uint64_t id = 6; id < 10; ++id)
    EXPECT_EQ(q.add(id, "e", e), 2u) << "only instance 2 is left";
}

TEST(PrefillQueue, WithoutGroupingItIsFirstComeFirstServed) {
  prefill_queue q(1, 1, [](const std::string&) { return seconds{1.0}; });
  for (std::uint64_t id = 1; id <= 5; ++id)
    q.add(id, id % 2 ? "a" : "b", {seconds{0.1}});
  EXPECT_EQ(q.groups(0), (std::vector<std::string>{"a", "b", "a", "b", "a"}));
  // Its estimated work counts a switch between each pair of neighbours.
  EXPECT_NEAR(q.work(0).count(), 5 * 1.0 + 5 * 0.1, 1e-12);
}

TEST(PlaceDecode, JoinsABatchOfItsModelElseTheInstanceWithFewestBatches) {
  const std::vector<std::vector<std::string>> batches = {{"a", "b"}, {"c"}, {"d", "e", "f"}};
  EXPECT_EQ(place_decode("b", batches, {true, true, true}, {1, 1, 1}), 0u);
  EXPECT_EQ(place_decode("b", batches, {false, true, true}, {1, 1, 1}), 1u); // a's has no room
  EXPECT_EQ(place_decode("z", batches, {true, true, true}, {1, 1, 1}), 1u);
}

TEST(Estimators, LinearFitsRecoverTheCoefficientsOfMeasuredSteps) {
  decode_estimator d(0, 0, 0);
  for (std::size_t batch = 1; batch <= 8; ++batch)
    for (std::size_t ctx = 100; ctx <= 2000; ctx += 300)
      d.add(ctx * batch, batch,
            seconds{0.01 + 2e-6 * static_cast<double>(ctx * batch) +
                    5e-4 * static_cast<double>(batch)});
  EXPECT_NEAR(d.predict(5000, 4).count(), 0.01 + 2e-6 * 5000 + 5e-4 * 4, 1e-9);
  prefill_estimator p(0, 0, 0);
  for (std::size_t t = 16; t <= 2048; t *= 2)
    p.add(t, static_cast<double>(t * t), seconds{0.005 + 1e-5 * t + 3e-9 * t * t});
  EXPECT_NEAR(p.predict(1000, 1e6).count(), 0.005 + 1e-2 + 3e-3, 1e-9);
  switch_estimator s(10e9);
  s.add(1'000'000'000, seconds{0.2}); // measured twice the bytes/bandwidth
  EXPECT_NEAR(s.predict(2'000'000'000).count(), 0.4, 1e-12);
  EXPECT_NEAR(s.correction(), 2.0, 1e-12);
}

// Prompts of real lengths put Σlen² near 1e8 beside a constant of 1, and measured times jitter:
// the fit must still find the constant that short prompts are mostly made of. A full window and
// a refit's period of samples (the fit lags up to 7), so the last fit is of a full window.
TEST(Estimators, PrefillFitHoldsWithSumsOfSquaresOfLongPrompts) {
  prefill_estimator p(0, 0, 0);
  std::mt19937 rng(5);
  std::normal_distribution<double> jitter(1.0, 0.01);
  const double a = 0.004, b = 2e-5, c = 7e-10;
  for (int i = 0; i < 256 + 8; ++i) {
    std::size_t tokens = 0;
    double squares = 0;
    for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k) {
      const std::size_t len = 1 + rng() % 8000;
      tokens += len;
      squares += static_cast<double>(len * len);
    }
    p.add(tokens, squares,
          seconds{(a + b * static_cast<double>(tokens) + c * squares) * jitter(rng)});
  }
  for (const std::size_t len : {1u, 100u, 4000u, 16000u}) {
    const double expect = a + b * static_cast<double>(len) + c * static_cast<double>(len * len);
    EXPECT_NEAR(p.predict(len, static_cast<double>(len * len)).count(), expect, 0.1 * expect)
        << "a prompt of " << len;
  }
}

// The fit is the refits due at each sample, whenever it is read: read at every sample or once in
// a while, the same to the bit, through stretches where the batch size never varies (its weight
// is kept) and where it varies only with the context (collinear: the weights are kept).
TEST(Estimators, TheFitIsTheSameWhetherReadAtEverySampleOrSeldom) {
  decode_estimator often, seldom;
  std::mt19937 rng(11);
  for (std::size_t i = 0; i < 3000; ++i) {
    const std::size_t stretch = (i / 400) % 3;
    const std::size_t step = 1 + rng() % 50; // collinear stretch: context is 100 × batch
    const std::size_t context = stretch == 2 ? 100 * step : 100 + rng() % 5000;
    const std::size_t batch = stretch == 0 ? 1 : stretch == 1 ? 1 + rng() % 4 : step;
    const double t = 0.01 + 2e-6 * static_cast<double>(context) +
                     1e-3 * static_cast<double>(batch) + 1e-4 * static_cast<double>(rng() % 7);
    often.add(context, batch, seconds{t});
    seldom.add(context, batch, seconds{t});
    const auto read = often.predict(1000, 2).count();
    if (i % 97 == 0 || i + 1 == 3000)
      ASSERT_EQ(read, seldom.predict(1000, 2).count()) << "after sample " << i;
  }
}

// Decode steps that were all of one batch size say nothing about the per-sequence cost: it keeps
// its starting value while the constant and the per-token cost are learned.
TEST(Estimators, AFeatureThatNeverVariedKeepsItsStartingWeight) {
  decode_estimator d(0.5, 0.5, 3e-4);
  for (std::size_t ctx = 10; ctx <= 300; ctx += 10)
    d.add(ctx, 1, seconds{0.01 + 1e-5 * static_cast<double>(ctx) + 3e-4});
  EXPECT_NEAR(d.predict(1000, 1).count(), 0.01 + 1e-2 + 3e-4, 1e-9);
  EXPECT_NEAR(d.predict(1000, 3).count(), 0.01 + 1e-2 + 9e-4, 1e-9);
}

TEST(Estimators, BeforeEnoughSamplesTheStartingValuesHold) {
  decode_estimator d(0.02, 0, 0);
  d.add(100, 1, seconds{0.5}); // one sample cannot fix three unknowns
  EXPECT_NEAR(d.predict(100, 1).count(), 0.02, 1e-12);
}

// The one deadline rule: the first token at TTFT, each later one TBT after the previous deadline
// or after the previous token when that one was late.
TEST(TokenDeadlines, ALateTokenReanchorsTheScheduleInsteadOfCondemningTheRest) {
  token_deadlines d(3, 2);
  EXPECT_DOUBLE_EQ(d.next(), 3);
  EXPECT_TRUE(d.on_token(2.5));
  EXPECT_DOUBLE_EQ(d.next(), 5);
  EXPECT_FALSE(d.on_token(6)); // late by 1 s
  EXPECT_DOUBLE_EQ(d.next(), 8);
  EXPECT_TRUE(d.on_token(7.5));
  // A request placed again after 2 tokens: they count as on time.
  EXPECT_DOUBLE_EQ(token_deadlines::after(2, 3, 2).next(), 7);
  // The measures a request's report gives are this rule applied to its token times.
  EXPECT_EQ(tokens_on_time({2.5, 6, 7.5}, 3, 2), 2u);
  EXPECT_DOUBLE_EQ(seconds_on_schedule({2.5, 6, 7.5}, 3, 2), 2.5 + 1.5);
}

} // namespace
} // namespace aeg::sched
