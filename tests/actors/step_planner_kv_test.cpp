// The step planner under KV pressure, without CAF or a device: splitting a batch to the host,
// recomputing, waiting for room and for KV on its way, and cancellation mid-turn.

#include "tests/actors/step_table.hpp"

#include <gtest/gtest.h>

namespace aeg::actors {
namespace {

using namespace aeg::actors::testing;

// --- KV pressure: split, recompute, wait -----------------------------------------------------

TEST(StepPlanner, AFullDeviceSplitsTheNewestSequencesOfTheBatchOffToTheHost) {
  table t; // 8 device blocks, all taken; each sequence needs a third block
  t.model("m0");
  for (std::uint64_t id = 1; id <= 4; ++id)
    t.running(0, id, 32);
  const auto p = t.plan(run("m0"));
  EXPECT_EQ(describe(p, t.v), (lines{"swap out #4", "split #4 to batch 1",
                                     "reserve #1 to 33 tokens", "reserve #2 to 33 tokens",
                                     "swap out #3", "split #3 to batch 1", "step #1+1 #2+1"}));
  EXPECT_EQ(p.turns[0], (batch_turns{0, 1, 1}));
}

TEST(StepPlanner, ASplitWithNoHostRoomGivesTheKvBackToBeRecomputed) {
  table t(2, 0); // no host KV
  t.model("m0");
  for (std::uint64_t id = 1; id <= 4; ++id)
    t.running(0, id, 32);
  EXPECT_EQ(t.describe_plan(run("m0")),
            (lines{"preempt #4", "reserve #1 to 33 tokens", "reserve #2 to 33 tokens", "preempt #3",
                   "step #1+1 #2+1"}));
}

TEST(StepPlanner, AnOverflowJoinsTheBatchWhoseTurnComesNextInsteadOfOpeningOne) {
  table t;
  t.model("m0");
  t.running(0, 1, 32);
  t.running(0, 2, 48);
  t.running(0, 3, 48);
  t.running(0, 4, 20, 1, kv_place::host, 1);
  t.v.models[0].turns.last_id = 1;
  const auto p = t.plan(run("m0"));
  EXPECT_EQ(describe(p, t.v),
            (lines{"swap out #3", "split #3 to batch 1", "reserve #1 to 33 tokens",
                   "reserve #2 to 49 tokens", "step #1+1 #2+1"}));
  EXPECT_EQ(p.turns[0], (batch_turns{0, 1, 1}));
}

TEST(StepPlanner, ANewTurnOfASplitModelServesItsNextBatch) {
  table t;
  t.model("m0");
  t.running(0, 1, 20);
  t.running(0, 2, 20, 1, kv_place::host, 1);
  t.v.models[0].turns.last_id = 1;
  const auto p = t.plan(next_turn("m0"));
  EXPECT_EQ(describe(p, t.v), (lines{"swap in #2", "step #2+1"}));
  EXPECT_TRUE(p.restart_turn);
  EXPECT_EQ(p.turns[0].current, 1u);
}

TEST(StepPlanner, WhenTheBatchOfTheTurnHasFinishedTheNextBatchGoesOn) {
  table t;
  t.model("m0");
  t.running(0, 2, 20, 1, kv_place::device, 1);
  const auto p = t.plan(run("m0"));
  EXPECT_EQ(describe(p, t.v), (lines{"step #2+1"}));
  EXPECT_EQ(p.turns[0].current, 1u);
}

TEST(StepPlanner, RoomOnItsWayBackFromATransferIsAwaitedNotSpunFor) {
  table t;
  t.model("m0");
  t.model("m1", small);
  t.running(0, 1, 64); // a whole slab, and it needs a fifth block
  // The other slab: blocks of m1's size, every one still being copied out.
  (void)t.v.device.edit().free_after(small, t.occupy(t.v.device.edit(), small, 8));
  const auto p = t.plan(run("m0"));
  EXPECT_EQ(describe(p, t.v), (lines{"idle: await room"}));
  EXPECT_EQ(p.blocked, (std::vector<bool>{false, false}));
}

TEST(StepPlanner, AModelBlockedByAnotherModelsKvYieldsAndIsPassedOver) {
  table t(1, 0); // 4 device blocks, no host KV
  t.model("m0");
  t.model("m1");
  t.running(1, 3, 64);
  t.waiting(0, 1, 10);
  const auto p = t.plan(run("m0"));
  EXPECT_EQ(describe(p, t.v), (lines{"idle: yield"}));
  EXPECT_EQ(p.blocked, (std::vector<bool>{true, false}));
}

TEST(StepPlanner, WhenEveryModelIsBlockedHostKvIsGivenBackFirst) {
  table t(1, 1); // 4 device blocks, 4 host blocks: both full
  t.model("m0");
  t.model("m1");
  t.running(1, 3, 64);
  t.running(1, 4, 64, 1, kv_place::host);
  t.v.models[1].blocked = true;
  t.waiting(0, 1, 10);
  const auto p = t.plan(run("m0"));
  EXPECT_EQ(describe(p, t.v), (lines{"preempt #4", "idle: yield"}));
  EXPECT_EQ(p.blocked, (std::vector<bool>{false, false}));
}

TEST(StepPlanner, WithNoHostKvToGiveBackTheOldestWaitingRequestFails) {
  table t(1, 0);
  t.model("m0");
  t.model("m1");
  t.running(1, 3, 64);
  t.v.models[1].blocked = true;
  t.waiting(0, 1, 10);
  t.waiting(0, 2, 10);
  EXPECT_EQ(t.describe_plan(run("m0")),
            (lines{"fail #1: no KV cache room on the device or the host for any request",
                   "idle: yield"}));
}

TEST(StepPlanner, AContextThatCanNeverFitEndsWithAnError) {
  table t(1, 4); // 4 device blocks: 64 tokens at most
  t.model("m0");
  t.running(0, 1, 64);
  EXPECT_EQ(
      t.describe_plan(run("m0")),
      (lines{"fail #1: the KV cache cannot hold this request's context (64 KiB)", "idle: yield"}));
}

TEST(StepPlanner, APromptLargerThanTheWholePoolFailsAndTheNextRequestGoesOn) {
  table t(1, 4);
  t.v.limits.max_batch_tokens = 128;
  t.model("m0");
  t.waiting(0, 1, 80);
  t.waiting(0, 2, 10);
  EXPECT_EQ(t.describe_plan(run("m0")),
            (lines{"fail #1: the prompt needs more KV cache than this instance has (64 KiB)",
                   "reserve #2 to 10 tokens", "admit #2 to batch 0", "step #2+10"}));
}

TEST(StepPlanner, KvWhoseCopyFailedIsRecomputedFromTheTokens) {
  table t;
  t.model("m0");
  t.running(0, 1, 20).copy = kv_copy::failed;
  EXPECT_EQ(t.describe_plan(run("m0")),
            (lines{"preempt #1", "reserve #1 to 21 tokens", "admit #1 to batch 0", "step #1+21"}));
}

// --- KV arriving -----------------------------------------------------------------------------

TEST(StepPlanner, ABatchStartsWithoutKvWhoseCopyTakesLongerThanAStep) {
  table t;
  sched::switch_estimator slow(1e3); // 16 KiB take seconds: far longer than a step
  t.v.switch_time = &slow;
  t.model("m0");
  t.running(0, 1, 10);
  t.running(0, 2, 10).copy = kv_copy::arriving;
  EXPECT_EQ(t.describe_plan(run("m0")), (lines{"step #1+1"}));
}

TEST(StepPlanner, ABatchWaitsOnTheDeviceForKvThatArrivesWithinAStep) {
  table t;
  sched::switch_estimator fast(1e12);
  t.v.switch_time = &fast;
  t.model("m0");
  t.running(0, 1, 10);
  t.running(0, 2, 10).copy = kv_copy::arriving;
  EXPECT_EQ(t.describe_plan(run("m0")), (lines{"step #1+1 #2+1"}));
}

// --- cancellation ----------------------------------------------------------------------------

TEST(StepPlanner, ARequestCancelledMidTurnLeavesRoomForTheNextWaitingOne) {
  table t(1, 0); // 4 device blocks: two running requests fill them
  t.model("m0");
  t.running(0, 1, 20);
  const auto gone = t.running(0, 2, 20).blocks;
  t.waiting(0, 3, 10);
  EXPECT_EQ(t.describe_plan(run("m0")), (lines{"step #1+1 #2+1"}));
  // #2 is cancelled during the step: it has left the instance and its blocks are free.
  t.v.seqs.erase(2);
  std::erase(t.v.models[0].running, 2u);
  t.v.device.edit().free(block, gone);
  EXPECT_EQ(t.describe_plan(run("m0")),
            (lines{"reserve #3 to 10 tokens", "admit #3 to batch 0", "step #1+1 #3+10"}));
}

} // namespace
} // namespace aeg::actors
