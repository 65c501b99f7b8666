// The scheduling policies, driven without actors: a fake step loop advances time and the test
// checks the decisions step by step against tables.

#include "actors/sched/deadlines.hpp"
#include "actors/sched/estimators.hpp"
#include "actors/sched/prefill_queue.hpp"
#include "actors/sched/quota.hpp"
#include "actors/sched/switch_policy.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace aeg::sched {
namespace {

using namespace std::chrono_literals;

TEST(DecodeQuota, ThePapersWorkedExample) {
  // Three batches, 25 ms steps, TBT 100 ms (n = 4 each), switches of 3 s per round.
  const std::vector<batch_load> b(3, batch_load{seconds{0.025}, seconds{0.1}});
  // With α fixed at 1 as the paper's illustration does: 3 s each, a 12 s round, 120 tokens per
  // turn, which take exactly 12 s to play back at 10 tokens/s: every deadline met.
  const auto fixed = assign_quotas(b, seconds{3}, seconds{4}, 1.0);
  for (auto q : fixed.quotas)
    EXPECT_NEAR(q.count(), 3.0, 1e-12);
  // Eq. 3 itself: α = max(3 / (4 · 4) + 0.75, 0.5) = 0.9375 and q = 3 / (4 · 0.1875) = 4 s,
  // Q_MAX exactly; 160 tokens per turn cover 16 s of playback in a 15 s round.
  const auto eq3 = assign_quotas(b, seconds{3}, seconds{4});
  EXPECT_NEAR(eq3.alpha, 0.9375, 1e-12);
  for (auto q : eq3.quotas) {
    EXPECT_NEAR(q.count(), 4.0, 1e-12);
    const double round = 3 * q.count() + 3;
    EXPECT_GE(q.count() / 0.025 * 0.1, round); // tokens × TBT ≥ round length
  }
}

TEST(DecodeQuota, FasterBatchesGetShorterTurnsAndNoneExceedsTheCap) {
  const std::vector<batch_load> b = {{seconds{0.01}, seconds{0.1}},  // n = 10
                                     {seconds{0.05}, seconds{0.1}}}; // n = 2
  const auto r = assign_quotas(b, seconds{1}, seconds{4});
  // Every batch buffers the same playback time: n_i · q_i equal.
  EXPECT_NEAR(10 * r.quotas[0].count(), 2 * r.quotas[1].count(), 1e-9);
  for (auto q : r.quotas)
    EXPECT_LE(q.count(), 4.0 + 1e-12);
  EXPECT_GE(r.alpha, 0.5);
}

TEST(DecodeQuota, AnOverloadedRoundIsCappedAndFreeSwitchesGiveShortTurns) {
  // Σ 1/n = 1.2 > 1: the round cannot keep up; α absorbs it and quotas stay ≤ Q_MAX.
  const std::vector<batch_load> heavy(3, batch_load{seconds{0.04}, seconds{0.1}});
  for (auto q : assign_quotas(heavy, seconds{2}, seconds{4}).quotas)
    EXPECT_LE(q.count(), 4.0 + 1e-12);
  // Nothing to switch: turns become short (a millisecond of switching spread thin).
  const std::vector<batch_load> light(2, batch_load{seconds{0.01}, seconds{0.1}});
  for (auto q : assign_quotas(light, seconds{0}, seconds{4}).quotas)
    EXPECT_LT(q.count(), 0.01);
}

// A fake decode loop: the policy decides at each boundary; each step takes its model's step
// time; a switch to a model other than the prefetched one costs its switch time.
struct fake_model {
  std::string name;
  seconds step;
  seconds switch_time;
  int steps_left;
};

std::vector<std::string> run(switch_policy& p, std::vector<fake_model> models, int max_steps) {
  std::vector<std::string> trace;
  std::string active, staged;
  seconds turn_elapsed{0};
  std::size_t turn_steps = 0;
  for (int i = 0; i < max_steps; ++i) {
    instance_view v;
    v.active = active;
    v.staged = staged;
    for (const auto& m : models)
      if (m.steps_left > 0)
        v.models.push_back({m.name, 0, 1, {}, m.step, m.switch_time, seconds{0.1}});
    if (v.models.empty())
      break;
    v.turn_steps = turn_steps;
    v.turn_elapsed = turn_elapsed;
    const auto d = p.decide(v);
    if (d.run != active || d.new_turn) {
      active = d.run;
      turn_elapsed = seconds{0};
      turn_steps = 0;
    }
    staged = d.prefetch;
    for (auto& m : models)
      if (m.name == active) {
        --m.steps_left;
        turn_elapsed += m.step;
      }
    ++turn_steps;
    trace.push_back(active);
  }
  return trace;
}

TEST(WeightedRoundRobin, TurnsLastTheirQuotasInArrivalOrderAndPrefetchTheNext) {
  // Two models, 25 ms steps, 100 ms TBT (n = 4), 0.3 s to switch each: Σ c = 0.6 s,
  // α = max(0.6 / 16 + 0.5, 0.5) = 0.5375, q = 0.6 / (4 · 0.0375) = 4 s = 160 steps.
  auto p = make_weighted_round_robin(seconds{4});
  const auto trace =
      run(*p, {{"a", seconds{0.025}, seconds{0.3}, 400}, {"b", seconds{0.025}, seconds{0.3}, 400}},
          700);
  std::vector<std::pair<std::string, int>> turns; // run-length encoding of the trace
  for (const auto& m : trace)
    if (turns.empty() || turns.back().first != m)
      turns.emplace_back(m, 1);
    else
      ++turns.back().second;
  // Turns of 4 s of 25 ms steps: 160 steps (one more when the float sum of the steps lands a
  // hair under 4 s), alternating, until 700 steps.
  ASSERT_EQ(turns.size(), 5u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(turns[i].first, i % 2 == 0 ? "a" : "b");
    EXPECT_NEAR(turns[i].second, 160, 1) << "turn " << i;
  }
  EXPECT_EQ(turns[4].first, "a");
  // While "a" runs, "b" is what is prefetched.
  instance_view v;
  v.active = "a";
  v.models = {{"a", 0, 1, {}, seconds{0.025}, seconds{0.3}, seconds{0.1}},
              {"b", 0, 1, {}, seconds{0.025}, seconds{0.3}, seconds{0.1}}};
  auto fresh = make_weighted_round_robin(seconds{4});
  EXPECT_EQ(fresh->decide(v).prefetch, "b");
}

// A turn's decision stands until its quota is spent (the instance then need not ask at every
// step), and asked meanwhile the policy says the same; while a request waits to start, any step
// may be a cut-in, and nothing stands.
TEST(WeightedRoundRobin, ATurnsDecisionStandsUntilItsQuotaUnlessARequestWaits) {
  auto p = make_weighted_round_robin(seconds{4});
  auto load = [](const std::string& name, std::size_t waiting) {
    return model_load{name,           waiting,      1,           seconds{waiting > 0 ? 0.5 : 0.0},
                      seconds{0.025}, seconds{0.3}, seconds{0.1}};
  };
  instance_view v;
  v.models = {load("a", 0), load("b", 0)};
  const auto first = p->decide(v); // quotas of 4 s, as in the test above
  EXPECT_EQ(first.run, "a");
  EXPECT_NEAR(first.holds_below.count(), 4.0, 1e-9);
  v.active = "a";
  for (double t = 0.0; t < 4.0; t += 0.5) {
    v.turn_elapsed = seconds{t};
    const auto d = p->decide(v);
    EXPECT_EQ(d.run, "a") << t;
    EXPECT_EQ(d.prefetch, first.prefetch) << t;
    EXPECT_FALSE(d.new_turn) << t;
    EXPECT_EQ(d.holds_below, first.holds_below) << t;
  }
  v.turn_elapsed = seconds{4.0};
  EXPECT_EQ(p->decide(v).run, "b");
  v.active = "b";
  v.turn_elapsed = seconds{1};
  v.models.push_back(load("c", 1));
  EXPECT_EQ(p->decide(v).holds_below, seconds{0});
}

TEST(WeightedRoundRobin, AModelWithoutWorkEndsItsTurnAndNewWorkWaitsForTheNextRound) {
  auto p = make_weighted_round_robin(seconds{4});
  // "a" has 3 steps of work, "b" many: a's turn ends when its work does.
  const auto trace = run(
      *p, {{"a", seconds{0.025}, seconds{0.3}, 3}, {"b", seconds{0.025}, seconds{0.3}, 10}}, 20);
  const std::vector<std::string> expected = {"a", "a", "a", "b", "b", "b", "b",
                                             "b", "b", "b", "b", "b", "b"};
  EXPECT_EQ(trace, expected);
}

TEST(WeightedRoundRobin, RequestsWaitingToStartCutInThenTheRoundResumesWithThemInIt) {
  auto p = make_weighted_round_robin(seconds{4});
  auto load = [](const std::string& name, std::size_t waiting, std::size_t running) {
    return model_load{name,           waiting,      running,     seconds{waiting > 0 ? 0.5 : 0.0},
                      seconds{0.025}, seconds{0.3}, seconds{0.1}};
  };
  instance_view v;
  v.models = {load("a", 0, 1), load("b", 0, 1)};
  EXPECT_EQ(p->decide(v).run, "a"); // a round of a and b begins
  v.active = "a";
  v.turn_elapsed = seconds{1};
  // "c" gets a request that has not started: it cuts in, and a is prefetched for the return.
  v.models.push_back(load("c", 1, 0));
  auto d = p->decide(v);
  EXPECT_EQ(d.run, "c");
  EXPECT_EQ(d.prefetch, "a");
  // Once c's request has started, a's turn resumes.
  v.active = "c";
  v.turn_elapsed = seconds{0.05};
  v.models.back() = load("c", 0, 1);
  EXPECT_EQ(p->decide(v).run, "a");
  // After a's and b's turns, c's comes in this same round.
  v.active = "a";
  v.turn_elapsed = seconds{5};
  EXPECT_EQ(p->decide(v).run, "b");
  v.active = "b";
  EXPECT_EQ(p->decide(v).run, "c");
  // A request that cannot start (no KV room) cuts in once a round and at most Q_MAX long.
  v.active = "c";
  v.turn_elapsed = seconds{5};
  v.models = {load("a", 0, 1), load("c", 1, 1)};
  EXPECT_EQ(p->decide(v).run, "a");
}

// A cut-in does not lengthen the turn it interrupts: the switch back restarts the instance's
// clock, so the turn resumes with what was left of its quota, and one that had used it all is
// over (the round goes on to the next turn).
TEST(WeightedRoundRobin, AnInterruptedTurnResumesWithWhatIsLeftOfItsQuota) {
  auto load = [](const std::string& name, std::size_t waiting, std::size_t running) {
    return model_load{name,           waiting,      running,     seconds{waiting > 0 ? 0.5 : 0.0},
                      seconds{0.025}, seconds{0.3}, seconds{0.1}};
  };
  // a and b: n = 4, c = 0.6 s, α = 0.5375, q = 4 s each.
  struct step {
    std::string active;
    double elapsed;
    std::size_t c_waiting, c_running; // c: not in the round until its request arrives
    std::string run, prefetch;
  };
  const std::vector<step> resumed = {
      {"", 0, 0, 0, "a", "b"},     // a round of a and b
      {"a", 3.0, 1, 0, "c", "a"},  // c's prompt cuts in after 3 s of a's 4 s turn
      {"c", 0.05, 0, 1, "a", "b"}, // c's request started: back to a
      {"a", 0.9, 0, 1, "a", "b"},  // a has 1 s left of its turn
      {"a", 1.0, 0, 1, "b", "c"},  // not a fresh 4 s: b's turn, then c's (it joined the round)
  };
  const std::vector<step> used_up = {
      {"", 0, 0, 0, "a", "b"},
      {"a", 4.5, 1, 0, "c", "b"},  // a's turn was over when c cut in
      {"c", 0.05, 0, 1, "b", "c"}, // so the round goes on with b, not a second turn of a
  };
  for (const auto* table : {&resumed, &used_up}) {
    auto p = make_weighted_round_robin(seconds{4});
    for (std::size_t i = 0; i < table->size(); ++i) {
      const auto& s = (*table)[i];
      instance_view v;
      v.active = s.active;
      v.turn_elapsed = seconds{s.elapsed};
      v.models = {load("a", 0, 1), load("b", 0, 1)};
      if (s.c_waiting + s.c_running > 0)
        v.models.push_back(load("c", s.c_waiting, s.c_running));
      const auto d = p->decide(v);
      EXPECT_EQ(d.run, s.run) << "step " << i << (table == &resumed ? " (resumed)" : " (used up)");
      EXPECT_EQ(d.prefetch, s.prefetch)
          << "step " << i << (table == &resumed ? " (resumed)" : " (used up)");
    }
  }
}

// Requests of the active model that cut in get a fresh turn's clock but not its next batch: a
// split model does not swap its batches for a request that only needs to start.
TEST(WeightedRoundRobin, ACutInOfTheActiveModelKeepsItsBatch) {
  auto p = make_weighted_round_robin(seconds{4});
  instance_view v;
  v.active = "c";
  v.models = {{"a", 0, 1, {}, seconds{0.025}, seconds{0.3}, seconds{0.1}},
              {"c", 1, 4, seconds{0.5}, seconds{0.025}, seconds{0.3}, seconds{0.1}, 2}};
  const auto d = p->decide(v);
  EXPECT_EQ(d.run, "c");
  EXPECT_TRUE(d.new_turn);
  EXPECT_FALSE(d.next_batch);
}

TEST(WeightedRoundRobin, AModelThatEndsOneRoundAndBeginsTheNextGetsAFullTurn) {
  auto p = make_weighted_round_robin(seconds{4});
  const model_load b{"b", 0, 1, {}, seconds{0.025}, seconds{0.3}, seconds{0.1}};
  const model_load c{"c", 0, 1, {}, seconds{0.025}, seconds{0.3}, seconds{0.1}};
  instance_view v;
  v.models = {b};
  EXPECT_EQ(p->decide(v).run, "b"); // a round of b alone
  v.active = "b";
  // c gets work while b's turn runs; b's quota ends, and the next round begins with b again.
  v.models = {b, c};
  v.turn_elapsed = seconds{5};
  const auto d = p->decide(v);
  EXPECT_EQ(d.run, "b");
  EXPECT_TRUE(d.new_turn) << "without a switch, only this restarts the turn's clock";
  EXPECT_EQ(d.prefetch, "c");
  // With the clock restarted, b keeps the device for its new turn.
  v.turn_elapsed = seconds{0.025};
  const auto next = p->decide(v);
  EXPECT_EQ(next.run, "b");
  EXPECT_FALSE(next.new_turn);
}

// A model whose KV overflowed the device runs as two batches: two adjacent turns in the round,
// each with its own quota; the second begins without a switch, as a new turn (the instance then
// serves the other batch), and the model after it is what is prefetched meanwhile.
TEST(WeightedRoundRobin, ASplitModelGetsATurnPerBatch) {
  auto p = make_weighted_round_robin(seconds{4});
  model_load a{"a", 0, 8, {}, seconds{0.025}, seconds{0.3}, seconds{0.1}};
  a.batches = 2;
  const model_load b{"b", 0, 1, {}, seconds{0.025}, seconds{0.3}, seconds{0.1}};
  instance_view v;
  v.models = {a, b};
  auto d = p->decide(v);
  EXPECT_EQ(d.run, "a");
  EXPECT_EQ(d.prefetch, "b");
  // Three batches of equal steps share the round: each turn's quota is a third of it.
  const auto q = assign_quotas(std::vector<batch_load>(3, {seconds{0.025}, seconds{0.1}}),
                               seconds{0.6}, seconds{4});
  v.active = "a";
  v.turn_elapsed = q.quotas[0] * 0.99;
  d = p->decide(v);
  EXPECT_EQ(d.run, "a");
  EXPECT_FALSE(d.new_turn);
  v.turn_elapsed = q.quotas[0] * 1.01; // a's first batch is done: its second batch's turn
  d = p->decide(v);
  EXPECT_EQ(d.run, "a");
  EXPECT_TRUE(d.new_turn);
  EXPECT_TRUE(d.next_batch);
  EXPECT_EQ(d.prefetch, "b");
  v.turn_elapsed = q.quotas[1] * 1.01; // then b
  EXPECT_EQ(p->decide(v).run, "b");
}

TEST(RoundRobin, AModelAloneWithWorkStillTakesTurns) {
  auto p = make_round_robin(2);
  instance_view v;
  v.models = {{"a", 0, 4, {}, seconds{0.01}, seconds{0}, seconds{0.1}}};
  v.active = "a";
  v.turn_steps = 1;
  EXPECT_FALSE(p->decide(v).new_turn);
  v.turn_steps = 2;
  const auto d = p->decide(v);
  EXPECT_EQ(d.run, "a");
  EXPECT_TRUE(d.new_turn);
}

TEST(DrainFirst, AModelKeepsTheDeviceUntilItsWorkIsDone) {
  auto p = make_drain_first();
  const auto trace =
      run(*p, {{"a", seconds{0.025}, seconds{0.3}, 4}, {"b", seconds{0.025}, seconds{0.3}, 2}}, 10);
  const std::vector<std::string> expected = {"a", "a", "a", "a", "b", "b"};
  EXPECT_EQ(trace, expected);
}

TEST(DrainFirst, ASplitModelServesItsBatchesInTurns) {
  auto p = make_drain_first();
  model_load a{"a", 0, 8, {}, seconds{0.025}, seconds{0.3}, seconds{0.1}};
  instance_view v;
  v.active = "a";
  v.turn_steps = 40;
  v.models = {a};
  EXPECT_FALSE(p->decide(v).new_turn); // one batch: it drains
  v.models[0].batches = 2;
  v.turn_steps = 15;
  EXPECT_FALSE(p->decide(v).new_turn);
  v.turn_steps = 16;
  const auto d = p->decide(v);
  EXPECT_EQ(d.run, "a");
  EXPECT_TRUE(d.new_turn);
  EXPECT_TRUE(d.next_batch);
}

// ServerlessLLM keeps a model until it drains and loads the next only then, with nothing
// prefetched; the oldest work goes first, or with ServerlessLLM+ the shortest job.
TEST(ServerlessLlm, DrainsThenLoadsOnDemandInArrivalOrderOrShortestJobFirst) {
  instance_view v;
  model_load a{"a", 1, 0, {}, seconds{0.025}, seconds{0.3}, seconds{0.1}};
  model_load b = a, c = a;
  a.shortest_job = 300;
  b.name = "b";
  b.shortest_job = 20;
  c.name = "c";
  c.shortest_job = 90;
  v.models = {a, b, c}; // in the order their work arrived
  auto fifo = make_serverless_llm();
  auto sjf = make_serverless_llm_plus();
  EXPECT_EQ(fifo->decide(v).run, "a");
  EXPECT_EQ(sjf->decide(v).run, "b");
  EXPECT_TRUE(fifo->decide(v).prefetch.empty());
  EXPECT_TRUE(sjf->decide(v).prefetch.empty());
  v.active = "c"; // a model with work keeps the device, however long its jobs
  v.turn_steps = 500;
  EXPECT_EQ(fifo->decide(v).run, "c");
  EXPECT_EQ(sjf->decide(v).run, "c");
  EXPECT_FALSE(sjf->decide(v).new_turn);
  EXPECT_EQ(make_switch_policy("serverless_llm_plus", seconds{4}, 16)->decide(v).run, "c");
}

TEST(RoundRobin, TurnsOfAFixedNumberOfSteps) {
  auto p = make_round_robin(2);
  const auto trace =
      run(*p, {{"a", seconds{0.01}, seconds{0}, 5}, {"b", seconds{0.01}, seconds{0}, 3}}, 10);
  const std::vector<std::string> expected = {"a", "a", "b", "b", "a", "a", "b", "a"};
  EXPECT_EQ(trace, expected);
}

} // namespace
} // namespace aeg::sched
