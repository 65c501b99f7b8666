// The instance's step planner, without CAF or a device: each test builds the state an instance
// is in at a step boundary (models, sequences, KV in ledgers that follow the pools' rules), gives
// the policy's decision, and checks the plan line by line, as a step table.

#include "tests/actors/step_table.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace aeg::actors {
namespace {

using namespace aeg::actors::testing;

// --- continuous batching ---------------------------------------------------------------------

TEST(StepPlanner, ADecodeStepRunsEveryRunningSequenceOfTheBatchOneToken) {
  table t;
  t.model("m0");
  t.running(0, 1, 20);
  t.running(0, 2, 5);
  EXPECT_EQ(t.describe_plan(run("m0")), (lines{"step #1+1 #2+1"}));
}

TEST(StepPlanner, ASequenceCrossingABlockBoundaryReservesOneMoreBlock) {
  table t;
  t.model("m0");
  t.running(0, 1, 16);
  EXPECT_EQ(t.describe_plan(run("m0")), (lines{"reserve #1 to 17 tokens", "step #1+1"}));
}

TEST(StepPlanner, WaitingRequestsJoinInArrivalOrderWhileTheTokenBudgetLasts) {
  table t;
  t.model("m0");
  t.running(0, 1, 20);
  t.waiting(0, 2, 30);
  t.waiting(0, 3, 30);
  t.waiting(0, 4, 10);
  // 64 tokens: one decode, two prompts of 30, and 3 tokens of the last prompt.
  EXPECT_EQ(t.describe_plan(run("m0")),
            (lines{"reserve #2 to 30 tokens", "admit #2 to batch 0", "reserve #3 to 30 tokens",
                   "admit #3 to batch 0", "reserve #4 to 3 tokens", "admit #4 to batch 0",
                   "step #1+1 #2+30 #3+30 #4+3"}));
}

TEST(StepPlanner, ALongPromptIsReadInChunksOfTheTokenBudget) {
  table t;
  t.model("m0");
  t.waiting(0, 1, 100);
  EXPECT_EQ(t.describe_plan(run("m0")),
            (lines{"reserve #1 to 64 tokens", "admit #1 to batch 0", "step #1+64"}));

  table next; // the step after: 64 tokens read, 36 to go
  next.model("m0");
  next.running(0, 1, 64, 36);
  EXPECT_EQ(next.describe_plan(run("m0")), (lines{"reserve #1 to 100 tokens", "step #1+36"}));
}

TEST(StepPlanner, PromptChunksBesideDecodingRequestsTakeOnlyWhatTheyCanSpare) {
  table t;
  t.v.limits.prompt_tokens_beside_decodes = 16;
  t.model("m0");
  t.running(0, 1, 20);
  t.waiting(0, 2, 40);
  EXPECT_EQ(t.describe_plan(run("m0")),
            (lines{"reserve #2 to 16 tokens", "admit #2 to batch 0", "step #1+1 #2+16"}));
}

TEST(StepPlanner, APromptBeingReadLeavesHalfOfTheStepToRequestsWaitingBehindIt) {
  table t;
  t.model("m0");
  t.running(0, 1, 32, 68);
  t.waiting(0, 2, 8);
  EXPECT_EQ(t.describe_plan(run("m0")), (lines{"reserve #1 to 64 tokens", "reserve #2 to 8 tokens",
                                               "admit #2 to batch 0", "step #1+32 #2+8"}));
}

// A prompt being read ahead of decoding sequences in the batch, with an allowance as large as
// the step: the decoding sequences still get their tokens, the prompt takes the rest.
TEST(StepPlanner, APromptBeingReadLeavesEveryDecodingSequenceItsToken) {
  table t;
  t.model("m0");
  t.running(0, 1, 32, 100); // first in the batch, with more prompt than the step holds
  t.running(0, 2, 10);
  t.running(0, 3, 12);
  EXPECT_EQ(t.describe_plan(run("m0")), (lines{"reserve #1 to 94 tokens", "step #1+62 #2+1 #3+1"}));
}

// The same with decoding sequences beside it, whose deadlines hold the step's prompt tokens to 24:
// the long prompt takes half of those, the waiting request the rest.
TEST(StepPlanner, APromptBeingReadBesideDecodesSharesTheirAllowanceWithRequestsWaiting) {
  table t;
  t.v.limits.prompt_tokens_beside_decodes = 24;
  t.model("m0");
  t.running(0, 1, 32, 68);
  t.running(0, 2, 10);
  t.waiting(0, 3, 8);
  EXPECT_EQ(t.describe_plan(run("m0")), (lines{"reserve #1 to 44 tokens", "reserve #3 to 8 tokens",
                                               "admit #3 to batch 0", "step #1+12 #2+1 #3+8"}));
}

TEST(StepPlanner, APrefillInstanceStepsOneRequestAtATime) {
  table t;
  t.v.limits.one_sequence_per_step = true;
  t.model("m0");
  t.waiting(0, 1, 10);
  t.waiting(0, 2, 10);
  EXPECT_EQ(t.describe_plan(run("m0")),
            (lines{"reserve #1 to 10 tokens", "admit #1 to batch 0", "step #1+10"}));
}

TEST(StepPlanner, ASequenceLimitCapsTheStep) {
  table t;
  t.v.limits.max_seqs = 2;
  t.model("m0");
  t.running(0, 1, 5);
  t.running(0, 2, 5);
  t.waiting(0, 3, 4);
  EXPECT_EQ(t.describe_plan(run("m0")), (lines{"step #1+1 #2+1"}));
}

// --- switching and prefetch ------------------------------------------------------------------

TEST(StepPlanner, ASwitchToAPrefetchedModelActivatesItAndPrefetchesTheNext) {
  table t;
  t.model("m0");
  t.model("m1");
  t.model("m2");
  t.v.staged = 1;
  t.running(1, 1, 20);
  const auto p = t.plan(run("m1", "m2"));
  EXPECT_EQ(describe(p, t.v), (lines{"activate m1 (prefetched)", "prefetch m2", "step #1+1"}));
  EXPECT_TRUE(p.restart_turn);
}

TEST(StepPlanner, ASwitchToAModelNotStagedCopiesIt) {
  table t;
  t.model("m0");
  t.model("m1");
  t.running(1, 1, 20);
  EXPECT_EQ(t.describe_plan(run("m1")), (lines{"activate m1", "step #1+1"}));
}

TEST(StepPlanner, NothingIsPrefetchedThatIsActiveOrAlreadyStaged) {
  table t;
  t.model("m0");
  t.model("m1");
  t.v.staged = 1;
  t.running(0, 1, 20);
  EXPECT_EQ(t.describe_plan(run("m0", "m1")), (lines{"step #1+1"}));
  EXPECT_EQ(t.describe_plan(run("m0", "m0")), (lines{"step #1+1"}));
}

TEST(StepPlanner, SwappingOutOnSwitchMovesTheLeavingModelsKvToTheHostFirst) {
  table t;
  t.v.limits.swap_out_on_switch = true;
  t.model("m0");
  t.model("m1");
  t.running(0, 1, 20);
  t.running(0, 2, 10);
  t.running(1, 3, 5);
  EXPECT_EQ(t.describe_plan(run("m1")),
            (lines{"swap out #1", "swap out #2", "activate m1", "step #3+1"}));
}

TEST(StepPlanner, ATurnBringsItsBatchsKvBackFromTheHost) {
  table t;
  t.model("m0");
  t.model("m1");
  t.running(0, 1, 20);
  t.running(1, 3, 20, 1, kv_place::host);
  t.running(1, 4, 20, 1, kv_place::host);
  EXPECT_EQ(t.describe_plan(run("m1")),
            (lines{"activate m1", "swap in #3", "swap in #4", "step #3+1 #4+1"}));
}

TEST(StepPlanner, RoomToBringKvInComesFromTheLeastRecentlyStepped) {
  table t; // 8 device blocks: 6 taken by m0, 3 needed by m1
  t.model("m0");
  t.model("m1");
  t.running(0, 1, 40).last_step = 7;
  t.running(0, 2, 40).last_step = 3;
  t.running(1, 3, 40, 1, kv_place::host);
  EXPECT_EQ(t.describe_plan(run("m1")),
            (lines{"activate m1", "swap out #2", "swap in #3", "step #3+1"}));
}

// --- the policy's view, purity, errors -------------------------------------------------------

TEST(StepPlanner, ThePolicySeesModelsWithWorkInArrivalOrderPassingOverBlockedOnes) {
  table t;
  t.model("m0");
  t.model("m1");
  t.model("m2");
  t.model("m3");
  t.v.models[0].work_since = 5;
  t.v.models[2].work_since = 2;
  t.v.models[1].blocked = true;
  t.running(0, 1, 20);
  t.running(1, 2, 20);
  t.waiting(2, 3, 10);
  auto pv = policy_view(t.v);
  ASSERT_EQ(pv.models.size(), 2u);
  EXPECT_EQ(pv.models[0].name, "m2");
  EXPECT_EQ(pv.models[0].oldest_wait, 997s);
  EXPECT_EQ(pv.models[1].name, "m0");
  EXPECT_EQ(pv.active, "m0");
  // With every model that has work blocked, all of them are listed: the plan decides.
  t.v.models[0].blocked = t.v.models[2].blocked = true;
  EXPECT_EQ(policy_view(t.v).models.size(), 3u);
}

TEST(StepPlanner, PlanningChangesNothingItReadsAndGivesTheSamePlanTwice) {
  table t;
  t.model("m0");
  for (std::uint64_t id = 1; id <= 4; ++id)
    t.running(0, id, 32);
  const auto before = t.v.device->num_available(block);
  const auto first = t.describe_plan(run("m0"));
  EXPECT_EQ(t.describe_plan(run("m0")), first);
  EXPECT_EQ(t.v.device->num_available(block), before);
  EXPECT_EQ(t.v.seqs.at(4).where, kv_place::device);
}

// The instance plans on its view itself: the same plan, and the view is left as the plan
// changed it (a request admitted, the device ledger holding its blocks), while the snapshot it
// started from stays as it was.
TEST(StepPlanner, PlanningInPlaceGivesTheSamePlanAndLeavesTheViewAsThePlanChangedIt) {
  table t;
  t.model("m0");
  t.running(0, 1, 16);
  t.waiting(0, 2, 20);
  const auto snapshot = std::make_shared<const gpu::kv_ledger>(*t.v.device);
  t.v.device = gpu::kv_ledger_copy(snapshot);
  const auto copied = t.describe_plan(run("m0"));
  auto in_place = plan_step_in_place(t.v, run("m0"));
  ASSERT_TRUE(in_place.has_value());
  EXPECT_EQ(describe(*in_place, t.v), copied);
  EXPECT_EQ(t.v.models[0].running, (std::vector<std::uint64_t>{1, 2}));
  EXPECT_TRUE(t.v.models[0].waiting.empty());
  EXPECT_EQ(t.v.seqs.at(2).blocks.size(), 2u);
  EXPECT_EQ(t.v.device->slabs().num_used(block), 4u);
  EXPECT_EQ(snapshot->slabs().num_used(block), 1u);
}

TEST(StepPlanner, ADecisionNamingAModelTheInstanceDoesNotServeIsAnError) {
  table t;
  t.model("m0");
  t.running(0, 1, 20);
  auto p = plan_step(t.v, run("nope"));
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message.find("'nope'"), std::string::npos);
}

} // namespace
} // namespace aeg::actors
