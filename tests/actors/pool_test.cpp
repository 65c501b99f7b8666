// Pools of CPU devices with tiny models, on CAF's real scheduler: hundreds of concurrent requests
// across models must all complete with the tokens each gets alone, whatever the topology, and
// leave no KV block held; cancellations and a dying instance must not lose or hang anything.

#include "tests/actors/pool_fixture.hpp"

#include <caf/all.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <set>

namespace aeg::actors {
namespace {

TEST_F(Pool, ThreeModelsOnOneColocatedDevice) {
  const auto models = tiny_models(3);
  const auto reqs = workload(models, 240, 8);
  const auto expected = solo(models, reqs);
  auto& p = start(spec(models, {instance_role::colocated}));
  submit(p.proxy(), reqs);
  const auto got = collect(reqs.size());
  expect_solo(got, reqs, expected);
  expect_nothing_held(p);
}

TEST_F(Pool, SixModelsOnTwoPrefillAndTwoDecodeDevices) {
  const auto models = tiny_models(6);
  const auto reqs = workload(models, 300, 8);
  const auto expected = solo(models, reqs);
  auto& p = start(spec(models, {instance_role::prefill, instance_role::prefill,
                                instance_role::decode, instance_role::decode}));
  submit(p.proxy(), reqs);
  const auto got = collect(reqs.size());
  expect_solo(got, reqs, expected);
  const auto m = metrics_of(p);
  EXPECT_EQ(m.finished.size(), reqs.size());
  for (const auto& f : m.finished) {
    EXPECT_EQ(f.token_times.size(), 8u);
    EXPECT_GT(f.ttft(), 0);
  }
  // The prefill instances' measured scale-ups replaced the proxy's prior switch rate.
  EXPECT_GT(m.switch_bytes_per_second, 0);
  EXPECT_NE(m.switch_bytes_per_second, proxy_options{}.switch_bytes_per_second);
  expect_nothing_held(p);
  // A prefill instance runs one request per step (every prompt here fits one step's budget),
  // even though the proxy keeps two on it at a time.
  std::size_t prefill_steps = 0;
  for (std::size_t i = 0; i < 2; ++i)
    (*self_)
        ->request(p.instances()[i], caf::infinite, stats_atom::value)
        .receive([&](const instance_stats& st) { prefill_steps += st.steps; },
                 [&](caf::error& e) { ADD_FAILURE() << sys_->render(e); });
  EXPECT_EQ(prefill_steps, reqs.size());
}

// Through a prefill hand-off: a client that reads only the end hears no token, one that asked
// for batches hears every token in batches, and a streaming one each token alone; all three run
// to their length, and the pool times every token of each (its request actors hear them all,
// the quiet and batched ones' in batches with their ages).
TEST_F(Pool, EachClientHearsTokensAsItAskedAndThePoolTimesThemAll) {
  const auto models = tiny_models(1);
  auto& p = start(spec(models, {instance_role::prefill, instance_role::decode}));
  auto streamed = request(1, models[0].name, 12, 9);
  auto quiet = request(2, models[0].name, 12, 9);
  quiet.delivery = token_delivery::none;
  auto batched = request(3, models[0].name, 12, 9);
  batched.delivery = token_delivery::batched;
  submit(p.proxy(), {streamed, quiet, batched});
  const auto got = collect(3);
  EXPECT_EQ(got.at(1).tokens.size(), 9u);
  EXPECT_EQ(got.at(1).batches, 0u);
  EXPECT_EQ(got.at(2).tokens.size(), 0u);
  EXPECT_EQ(got.at(3).tokens.size(), 9u);
  EXPECT_GE(got.at(3).batches, 1u);
  EXPECT_LT(got.at(3).batches, 9u) << "batches of one are a stream";
  for (std::uint64_t id : {1, 2, 3}) {
    EXPECT_EQ(got.at(id).result.reason, finish_reason::length) << got.at(id).result.message;
    EXPECT_EQ(got.at(id).result.completion_tokens, 9u) << "request " << id;
  }
  const auto finished = metrics_of(p).finished;
  ASSERT_EQ(finished.size(), 3u);
  for (const auto& f : finished) {
    ASSERT_EQ(f.token_times.size(), 9u) << "request " << f.id;
    EXPECT_TRUE(std::is_sorted(f.token_times.begin(), f.token_times.end())) << "request " << f.id;
    EXPECT_GE(f.token_times.front(), 0.0) << "request " << f.id;
  }
  expect_nothing_held(p);
}

// A short request that arrives while an 8,000-token prompt is being read, on the default step
// budget (512 tokens), does not wait for the prompt: the long request leaves half of each step to
// requests behind it, so the short one's first token comes before the long one's. Both get the
// tokens each gets alone. Order of events only: the time this takes on a real model is measured
// by benchmarks/fairness_bench.
TEST_F(Pool, AShortRequestArrivingDuringAnEightThousandTokenPromptStartsBeforeItIsRead) {
  aeg::testing::tiny_llama_spec t;
  t.context = 8448;
  t.dim = 64;
  t.heads = 2;
  t.kv_heads = 1;
  t.ffn = 128;
  const auto models = one_model(t, "m");
  const auto long_one = request(1, "m", 8000, 4);
  const auto short_one = request(2, "m", 8, 4);
  const auto expected = solo(models, {long_one, short_one});

  auto s = spec(models, {instance_role::colocated});
  s.instances[0].max_batch_tokens = instance_spec{}.max_batch_tokens;
  auto& p = start(s);
  submit(p.proxy(), {long_one});
  // The short request is sent once the instance has run a step of the long prompt (16 steps of
  // 512 tokens alone): it arrives while the prompt is being read, not before.
  for (std::size_t steps = 0; steps == 0;)
    (*self_)
        ->request(p.instances()[0], caf::infinite, stats_atom::value)
        .receive([&](const instance_stats& st) { steps = st.steps; },
                 [&](caf::error& e) { FAIL() << sys_->render(e); });
  submit(p.proxy(), {short_one});
  std::vector<std::pair<std::uint64_t, std::size_t>> events; // (request, tokens so far)
  const auto got = collect(2, [&](std::uint64_t id, std::size_t n) { events.emplace_back(id, n); });
  auto first_token_of = [&](std::uint64_t id) {
    return std::find(events.begin(), events.end(), std::pair<std::uint64_t, std::size_t>{id, 1});
  };
  const auto long_first = first_token_of(1), short_first = first_token_of(2);
  ASSERT_NE(long_first, events.end());
  ASSERT_NE(short_first, events.end());
  EXPECT_LT(short_first, long_first)
      << "the short request must start while the long prompt is still being read";
  expect_solo(got, {long_one, short_one}, expected);
  expect_nothing_held(p);
}

// One model's requests stay on one decode instance while their contexts fit its KV, and the
// rest go to another decode instance (the paper's placement) rather than splitting a batch on
// the first while the second sits idle.
TEST_F(Pool, DecodeRequestsBeyondOneInstancesKvGoToAnother) {
  const auto models = tiny_models(1);
  const auto reqs = workload(models, 120, 24);
  const auto expected = solo(models, reqs);
  auto s = spec(models, {instance_role::prefill, instance_role::decode, instance_role::decode});
  s.slab_bytes = 64 << 10;
  for (std::size_t i = 1; i < 3; ++i)
    s.instances[i].kv_bytes = 128 << 10; // 32 blocks: room for a few of the requests, not all
  auto& p = start(s);
  submit(p.proxy(), reqs);
  const auto got = collect(reqs.size());
  expect_solo(got, reqs, expected);
  for (std::size_t i = 1; i < 3; ++i) {
    instance_stats st;
    (*self_)
        ->request(p.instances()[i], caf::infinite, stats_atom::value)
        .receive([&](const instance_stats& x) { st = x; },
                 [&](caf::error& e) { ADD_FAILURE() << sys_->render(e); });
    EXPECT_GT(st.tokens_generated, 0u) << p.instance_names()[i] << " decoded nothing";
  }
  expect_nothing_held(p);
}

// Cancels at random moments: before placement, during prefill, between prefill and decode,
// during decode. The others must get their solo tokens; nothing may stay held.
TEST_F(Pool, CancellingAtRandomMomentsLeaksNothingAndDisturbsNoOne) {
  const auto models = tiny_models(4);
  const auto reqs = workload(models, 160, 24);
  const auto expected = solo(models, reqs);
  auto& p =
      start(spec(models, {instance_role::prefill, instance_role::decode, instance_role::decode}));
  std::mt19937 rng(5);
  std::map<std::uint64_t, std::size_t> cancel_after; // client id -> tokens seen (0: at once)
  for (const auto& r : reqs)
    if (rng() % 3 == 0)
      cancel_after[r.id] = rng() % 12;
  const auto ids = submit(p.proxy(), reqs);
  for (const auto& [client, after] : cancel_after)
    if (after == 0)
      (*self_)->send(p.proxy(), cancel_atom::value, ids.at(client));
  const auto got = collect(reqs.size(), [&](std::uint64_t client, std::size_t seen) {
    if (auto it = cancel_after.find(client); it != cancel_after.end() && it->second == seen)
      (*self_)->send(p.proxy(), cancel_atom::value, ids.at(client));
  });
  EXPECT_GT(expect_solo_unless_cancelled(
                got, reqs, expected, [&](std::uint64_t id) { return cancel_after.count(id) != 0; }),
            20u);
  expect_nothing_held(p);
}

// A decode instance killed mid-run: its requests are prefilled again (prompt and tokens so far)
// and decoded on the other, with the same tokens; with no instance left, they end with an error.
TEST_F(Pool, ADyingInstanceReroutesItsRequestsOrFailsThemClearly) {
  const auto models = tiny_models(2);
  const auto reqs = workload(models, 40, 40);
  const auto expected = solo(models, reqs);
  auto& p =
      start(spec(models, {instance_role::prefill, instance_role::decode, instance_role::decode}));
  submit(p.proxy(), reqs);
  bool killed = false;
  const auto got = collect(reqs.size(), [&](std::uint64_t, std::size_t seen) {
    if (!killed && seen == 5) {
      killed = true;
      caf::anon_send_exit(p.instances()[1], caf::exit_reason::kill);
    }
  });
  expect_solo(got, reqs, expected);
  EXPECT_GT(rerouted(p), 0u);
  EXPECT_EQ(metrics_of(p).instances_alive, 2u);
  expect_nothing_held(p, {1}); // the dead instance's host KV went back to the shared pool

  // Now the last decode instance goes too: new requests fail clearly, none hangs.
  caf::anon_send_exit(p.instances()[2], caf::exit_reason::kill);
  const auto more = workload(models, 6, 4);
  for (const auto& r : more)
    (*self_)
        ->request(p.proxy(), caf::infinite, submit_atom::value, r)
        .receive([](std::uint64_t) {}, [](caf::error&) {});
  const auto ended = collect(more.size());
  for (const auto& [id, o] : ended) {
    EXPECT_EQ(o.result.reason, finish_reason::error);
    EXPECT_FALSE(o.result.message.empty());
  }
}

// A prefill instance killed while requests wait for it and run on it. Its lane, now without
// work, must not attract the requests that go on (they would wait there forever): they and
// later ones go to the other prefill instance. Requests cancelled right after the death (queued
// again, or between instances) end at once. Nothing is left held, host KV included.
TEST_F(Pool, ADyingPrefillInstanceLeavesItsLaneAndItsRequestsCanStillBeCancelled) {
  const auto models = tiny_models(2);
  const auto reqs = workload(models, 40, 16);
  const auto expected = solo(models, reqs);
  auto& p =
      start(spec(models, {instance_role::prefill, instance_role::prefill, instance_role::decode}));
  const auto ids = submit(p.proxy(), reqs);
  bool killed = false;
  const auto got = collect(reqs.size(), [&](std::uint64_t, std::size_t) {
    if (killed)
      return;
    killed = true;
    caf::anon_send_exit(p.instances()[0], caf::exit_reason::kill);
    for (const auto& [client, id] : ids)
      if (client % 3 == 0)
        (*self_)->send(p.proxy(), cancel_atom::value, id);
  });
  expect_solo_unless_cancelled(got, reqs, expected, [](std::uint64_t id) { return id % 3 == 0; });
  // Later requests: all served by the prefill instance that is left.
  const auto more = workload(models, 12, 6);
  submit(p.proxy(), more);
  const auto later = collect(more.size());
  for (const auto& r : more) {
    const auto& o = later.at(r.id);
    EXPECT_EQ(o.result.reason, finish_reason::length) << o.result.message;
    EXPECT_TRUE(std::equal(o.tokens.begin(), o.tokens.end(), expected.at(r.id).begin()))
        << "request " << r.id;
  }
  expect_nothing_held(p, {0});
}

} // namespace
} // namespace aeg::actors
