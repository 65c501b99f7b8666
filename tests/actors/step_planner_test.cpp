// The instance's step planner, without CAF or a device: each test builds the state an instance
// is in at a step boundary (models, sequences, KV in ledgers that follow the pools' rules), gives
// the policy's decision, and checks the plan line by line, as a step table.

#include "actors/step_planner.hpp"
#include "kernels/kv_geometry.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace aeg::actors {
namespace {

using namespace std::chrono_literals;
using lines = std::vector<std::string>;

constexpr std::size_t KiB = 1024;
constexpr std::size_t slab = 64 * KiB;  // 4 blocks of 16 KiB, 8 of 8 KiB
constexpr std::size_t block = 16 * KiB; // the default model's KV block
constexpr std::size_t small = 8 * KiB;  // another model's KV block

// An instance at a step boundary, built by hand.
class table {
public:
  explicit table(std::size_t device_slabs = 2, std::size_t host_slabs = 4) {
    v.device = gpu::kv_ledger(nullptr, device_slabs * slab, slab);
    v.host = gpu::kv_ledger(nullptr, host_slabs * slab, slab);
    v.limits.max_batch_tokens = 64;
    v.limits.max_seqs = 8;
    v.limits.prompt_tokens_beside_decodes = 64;
    v.now = plan_clock::time_point{} + 1000s;
  }

  std::size_t model(std::string name, std::size_t block_bytes = block) {
    model_view m;
    m.name = std::move(name);
    m.block_bytes = block_bytes;
    m.image_bytes = 1 << 20;
    m.work_since = v.models.size() + 1;
    v.models.push_back(std::move(m));
    if (v.active == step_view::none)
      v.active = 0;
    return v.models.size() - 1;
  }

  // A running sequence with `kv_tokens` stored (blocks for them on `where`) and `pending`
  // tokens to run (1: it decodes).
  seq_view& running(std::size_t model, std::uint64_t id, std::size_t kv_tokens,
                    std::size_t pending = 1, kv_place where = kv_place::device,
                    std::uint64_t batch = 0) {
    seq_view& s = add(model, id, kv_tokens + pending);
    s.kv_tokens = kv_tokens;
    s.where = where;
    s.batch = batch;
    auto& pool = where == kv_place::device ? v.device : v.host;
    const auto blocks = kernels::kv_geometry::blocks_for(kv_tokens);
    EXPECT_TRUE(pool.allocate(v.models[model].block_bytes, blocks, s.blocks))
        << "the test's pool is too small for #" << id;
    v.models[model].running.push_back(id);
    return s;
  }

  // A request waiting for its prompt of `prompt` tokens to be read.
  seq_view& waiting(std::size_t model, std::uint64_t id, std::size_t prompt) {
    seq_view& s = add(model, id, prompt);
    v.models[model].waiting.push_back(id);
    return s;
  }

  // Fills the device (or the host) with blocks no sequence here owns: other instances' or
  // transfers'.
  std::vector<std::int32_t> occupy(gpu::kv_ledger& pool, std::size_t block_bytes, std::size_t n) {
    std::vector<std::int32_t> ids;
    EXPECT_TRUE(pool.allocate(block_bytes, n, ids));
    return ids;
  }

  step_plan plan(const sched::turn_decision& d) {
    auto p = plan_step(v, d);
    EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message);
    return p ? std::move(*p) : step_plan{};
  }
  lines describe_plan(const sched::turn_decision& d) { return describe(plan(d), v); }

  step_view v;

private:
  seq_view& add(std::size_t model, std::uint64_t id, std::size_t tokens) {
    seq_view s;
    s.id = id;
    s.model = model;
    s.tokens = tokens;
    s.last_step = id;
    s.arrived = plan_clock::time_point{} + std::chrono::seconds(id);
    return v.seqs[id] = std::move(s);
  }
};

sched::turn_decision run(std::string model, std::string prefetch = {}) {
  sched::turn_decision d;
  d.run = std::move(model);
  d.prefetch = std::move(prefetch);
  return d;
}

sched::turn_decision next_turn(std::string model) {
  auto d = run(std::move(model));
  d.new_turn = true;
  d.next_batch = true;
  return d;
}

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
  (void)t.v.device.free_after(small, t.occupy(t.v.device, small, 8));
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
  t.v.device.free(block, gone);
  EXPECT_EQ(t.describe_plan(run("m0")),
            (lines{"reserve #3 to 10 tokens", "admit #3 to batch 0", "step #1+1 #3+10"}));
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
  const auto before = t.v.device.num_available(block);
  const auto first = t.describe_plan(run("m0"));
  EXPECT_EQ(t.describe_plan(run("m0")), first);
  EXPECT_EQ(t.v.device.num_available(block), before);
  EXPECT_EQ(t.v.seqs.at(4).where, kv_place::device);
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
