#include "actors/instance_support.hpp"

#include <gtest/gtest.h>

namespace aeg::actors {
namespace {

using sched::seconds;

sched::turn_decision standing_for(double s, bool new_turn = false) {
  sched::turn_decision d{"a", "b", new_turn, new_turn};
  d.holds_below = seconds{s};
  return d;
}

step_plan decode_step() {
  step_plan p;
  p.step = {{1, 1}, {2, 1}};
  return p;
}

// A decision stands while the work is the version it saw, its model is active and the turn is
// younger than it holds; it is asked again as it stood, without a new turn.
TEST(StandingTurn, ADecisionStandsUntilTheWorkChangesOrItsTimeIsUp) {
  standing_turn t;
  EXPECT_FALSE(t.holds(7, 0, seconds{0}));
  t.planned(decode_step(), nullptr, false, 7, 0, step_view::none); // no fresh decision: none kept
  EXPECT_FALSE(t.holds(7, 0, seconds{0}));
  const auto fresh = standing_for(2.0, true);
  t.planned(decode_step(), &fresh, false, 7, 0, step_view::none);
  EXPECT_TRUE(t.holds(7, 0, seconds{1.9}));
  EXPECT_FALSE(t.holds(7, 0, seconds{2.0})) << "the turn has run as long as it holds";
  EXPECT_FALSE(t.holds(8, 0, seconds{0})) << "the work changed";
  EXPECT_FALSE(t.holds(7, 1, seconds{0})) << "another model is active";
  EXPECT_EQ(t.decision().run, "a");
  EXPECT_EQ(t.decision().prefetch, "b");
  EXPECT_FALSE(t.decision().new_turn);
  EXPECT_FALSE(t.decision().next_batch);
  // A plan under the standing decision keeps it; one that ran no step drops it.
  t.planned(decode_step(), nullptr, false, 7, 0, step_view::none);
  EXPECT_TRUE(t.holds(7, 0, seconds{1}));
  step_plan idle;
  idle.idle = idle_kind::yield;
  t.planned(idle, nullptr, false, 7, 0, step_view::none);
  EXPECT_FALSE(t.holds(7, 0, seconds{1}));
}

// None is kept when the policy promised nothing, or decided without seeing a blocked model
// (which the next step unblocks).
TEST(StandingTurn, NoDecisionStandsWithoutAPromiseOrWithAModelHiddenFromThePolicy) {
  standing_turn t;
  const auto none = standing_for(0);
  t.planned(decode_step(), &none, false, 1, 0, step_view::none);
  EXPECT_FALSE(t.holds(1, 0, seconds{0}));
  const auto fresh = standing_for(4);
  t.planned(decode_step(), &fresh, true, 1, 0, step_view::none);
  EXPECT_FALSE(t.holds(1, 0, seconds{0}));
  t.planned(decode_step(), &fresh, false, 1, 0, step_view::none);
  EXPECT_TRUE(t.holds(1, 0, seconds{0}));
  t.drop();
  EXPECT_FALSE(t.holds(1, 0, seconds{0}));
}

// In test mode the fresh answers are compared: a policy that decides otherwise, or a plan that
// differs from the step to be repeated, is an internal error.
TEST(StandingTurn, AFreshDecisionOrPlanThatDiffersIsAnError) {
  standing_turn t;
  const auto fresh = standing_for(4);
  t.planned(decode_step(), &fresh, false, 1, 0, step_view::none);
  EXPECT_TRUE(t.expect(fresh, decode_step(), true));
  auto other = fresh;
  other.run = "b";
  EXPECT_THROW((void)t.expect(other, decode_step(), false), error_exception);
  other = fresh;
  other.holds_below = seconds{3};
  EXPECT_THROW((void)t.expect(other, decode_step(), false), error_exception);
  auto longer = decode_step();
  longer.step.push_back({3, 1});
  EXPECT_THROW((void)t.expect(fresh, longer, true), error_exception);
  EXPECT_FALSE(t.expect(fresh, longer, false)) << "a plan not repeated is not compared";
}

// A step counts as decoding when each of its sequences reads one token after tokens it had: a
// one-token prompt reads its first, and a step with a longer feed reads a prompt.
TEST(CountStep, ADecodeStepIsOneTokenAfterTokensForEverySequence) {
  sequence decoding, fresh_one_token, fresh;
  decoding.kv.tokens = 40;
  instance_stats counts;
  count_step(counts, {{1, 1}}, {&decoding}, 0.25);
  count_step(counts, {{1, 1}, {2, 1}}, {&decoding, &fresh_one_token}, 0.5);
  count_step(counts, {{3, 7}}, {&fresh}, 1.0);
  count_step(counts, {{1, 1}, {1, 1}}, {&decoding, &decoding}, 0.125);
  EXPECT_EQ(counts.steps, 4u);
  EXPECT_EQ(counts.step_seconds, 1.875);
  EXPECT_EQ(counts.decode_steps, 2u);
  EXPECT_EQ(counts.decode_sequences, 3u);
  EXPECT_EQ(counts.decode_step_seconds, 0.375);
}

} // namespace
} // namespace aeg::actors
