// The instance actor on CAF's real scheduler with a CPU device: continuous batching must not
// change any request's tokens, and every KV block must come back however requests end.

#include "tests/actors/instance_fixture.hpp"

namespace aeg::actors {
namespace {

// A device that faults mid-run ends every request it holds with the reason, and the instance
// exits with it: nothing hangs, no token of a failed step reaches a client.
TEST_F(Instance, ADeviceFaultEndsEveryRequestWithItsReason) {
  auto image = tiny_model();
  std::map<std::uint64_t, std::vector<std::int32_t>> alone;
  // The same requests on a device that never faults: their tokens, and how many kernels they
  // take, so the fault lands halfway through the same run.
  // (A device of its own: an instance's KV pool takes what its device has left.)
  const fault_at never(std::numeric_limits<int>::max());
  auto counting = std::make_shared<hooked_device>(
      *gpu::make_device({.backend = "cpu", .ordinal = 1, .capacity_bytes = 256 << 20}),
      never.hook());
  {
    auto solo = spawn_instance(*sys_, counting, image);
    spawned_.push_back(solo);
    for (std::uint64_t id = 1; id <= 4; ++id)
      (*self_)->send(solo, generate_atom::value,
                     request(id, {1, 2, 3, static_cast<std::int32_t>(id)}, 40));
    for (auto& [id, o] : collect(4))
      alone[id] = o.tokens;
  }
  ASSERT_GT(never.kernels(), 100);
  const fault_at halfway(never.kernels() / 2);
  auto faulty = std::make_shared<hooked_device>(dev_, halfway.hook());
  auto inst = spawn_instance(*sys_, faulty, image);
  spawned_.push_back(inst);
  (*self_)->monitor(inst);
  for (std::uint64_t id = 1; id <= 4; ++id)
    (*self_)->send(inst, generate_atom::value,
                   request(id, {1, 2, 3, static_cast<std::int32_t>(id)}, 40));
  const auto got = collect(4);
  for (const auto& [id, o] : got) {
    EXPECT_EQ(o.result.reason, finish_reason::unavailable) << "request " << id;
    EXPECT_NE(o.result.message.find("injected fault: illegal address"), std::string::npos)
        << o.result.message;
    ASSERT_LT(o.tokens.size(), alone.at(id).size()) << "the fault came after request " << id;
    // What reached the client came from steps that completed: a prefix of the real answer.
    EXPECT_TRUE(std::equal(o.tokens.begin(), o.tokens.end(), alone.at(id).begin()))
        << "request " << id;
  }
  (*self_)->receive(
      [&](caf::down_msg& m) {
        EXPECT_NE(sys_->render(m.reason).find("injected fault"), std::string::npos)
            << sys_->render(m.reason);
      },
      caf::after(std::chrono::seconds(60)) >>
          [&] { ADD_FAILURE() << "the instance must exit after its device faulted"; });
}

// 16 requests of different lengths, greedy and sampled, sent at once to an instance whose steps
// hold 40 tokens: they join and leave the batch at step boundaries, long prompts are prefilled in
// chunks, and each must produce exactly the tokens it produces alone.
TEST_F(Instance, ConcurrentRequestsProduceTheTokensEachProducesAlone) {
  auto image = tiny_model();
  const auto vocab = image->config().vocab_size;
  auto inst = spawn(image, {.max_batch_tokens = 40, .max_seqs = 16});
  std::vector<generation_request> reqs;
  for (std::uint64_t i = 0; i < 16; ++i) {
    models::sampling_params s;
    if (i % 4 == 3)
      s = {0.8f, 20, 0.9f, 1000 + i}; // sampled: the seed fixes the tokens
    reqs.push_back(
        request(i, prompt(1 + (i * 7) % 60, vocab, static_cast<std::uint32_t>(i)), 6 + i % 5, s));
  }
  std::map<std::uint64_t, outcome> alone;
  for (const auto& r : reqs) {
    (*self_)->send(inst, generate_atom::value, r);
    alone.merge(collect(1));
  }
  for (const auto& r : reqs)
    (*self_)->send(inst, generate_atom::value, r);
  const auto together = collect(reqs.size());
  for (const auto& r : reqs) {
    const auto& a = alone.at(r.id);
    const auto& b = together.at(r.id);
    EXPECT_EQ(a.result.reason, finish_reason::length) << a.result.message;
    EXPECT_EQ(b.tokens, a.tokens) << "request " << r.id;
    EXPECT_EQ(b.tokens.size(), r.max_tokens);
    EXPECT_EQ(b.result.completion_tokens, r.max_tokens);
    EXPECT_EQ(b.result.prompt_tokens, r.prompt.size());
  }
  const auto s = stats(inst);
  EXPECT_TRUE(s.ready);
  EXPECT_EQ(s.kv_bytes_used, 0u);
  EXPECT_EQ(s.running + s.waiting, 0u);
  // The steps' time: each request alone decoded its tokens after the first in steps of its own;
  // a decode-only step's sequences each drew a token, and the first tokens came from prompts.
  std::size_t alone_decodes = 0;
  for (const auto& r : reqs)
    alone_decodes += r.max_tokens - 1;
  EXPECT_GE(s.decode_steps, alone_decodes);
  EXPECT_LT(s.decode_steps, s.steps);
  EXPECT_GE(s.decode_sequences, s.decode_steps);
  EXPECT_LE(s.decode_sequences, s.tokens_generated - 2 * reqs.size());
  EXPECT_GT(s.decode_step_seconds, 0.0);
  EXPECT_GT(s.step_seconds, s.decode_step_seconds); // the prompts' steps too
}

// The choices of one completion reach an instance together as one prompt group: the first reads
// the prompt, the others copy its KV and read only the last prompt token; each still draws
// exactly the tokens it draws alone, with the log-probabilities it has alone. A group whose leader
// is cancelled (perhaps before it has read the prompt) is read by another, and a follower
// cancelled while waiting ends at once; nothing leaks.
TEST_F(Instance, AGroupSharingAPromptReadsItOnceAndEachDrawsItsOwnTokens) {
  auto image = tiny_model();
  const auto vocab = image->config().vocab_size;
  const instance_options options{.max_batch_tokens = 40, .max_seqs = 16};
  auto group = [&](std::uint64_t first, std::uint64_t tag, std::size_t prompt_tokens) {
    std::vector<generation_request> reqs;
    for (std::uint64_t i = first; i < first + 4; ++i) {
      auto r = request(i, prompt(prompt_tokens, vocab, 9), 10, {1.0f, 0, 1.0f, 500 + i});
      r.prompt_group = tag;
      r.logprobs = 2;
      reqs.push_back(std::move(r));
    }
    return reqs;
  };
  // Each request alone, without its group, on an instance of its own.
  auto solo = spawn(image, options);
  auto alone = [&](generation_request r) {
    r.prompt_group = 0;
    (*self_)->send(solo, generate_atom::value, r);
    return collect(1).at(r.id);
  };
  // `reqs` (then cancels of `cancel`) on a new instance whose device holds every kernel until all
  // of them have been received (the stats answer comes after them), so that the group's
  // requests are all there before its leader's prompt is read, however the threads run.
  int ordinal = 2;
  auto together = [&](const std::vector<generation_request>& reqs,
                      std::vector<std::uint64_t> cancel) {
    const gate held;
    auto dev = std::make_shared<hooked_device>(
        *gpu::make_device({.backend = "cpu", .ordinal = ordinal++, .capacity_bytes = 256 << 20}),
        held.hook());
    auto inst = spawn_instance(*sys_, dev, image, options);
    spawned_.push_back(inst);
    for (const auto& r : reqs)
      (*self_)->send(inst, generate_atom::value, r);
    for (auto id : cancel)
      (*self_)->send(inst, cancel_atom::value, id);
    (void)stats(inst);
    held.open();
    auto out = collect(reqs.size());
    const auto s = stats(inst);
    EXPECT_EQ(s.kv_bytes_used, 0u);
    EXPECT_EQ(s.running + s.waiting, 0u);
    return std::pair{out, s.prompts_shared};
  };
  auto expect_alone = [&](const std::map<std::uint64_t, outcome>& out,
                          const generation_request& r) {
    const auto a = alone(r);
    EXPECT_EQ(out.at(r.id).result.reason, finish_reason::length) << out.at(r.id).result.message;
    EXPECT_EQ(out.at(r.id).tokens, a.tokens) << "request " << r.id;
    EXPECT_EQ(out.at(r.id).logprobs, a.logprobs) << "request " << r.id;
  };

  const auto shared = group(0, 77, 45); // its prompt takes two steps of 40 tokens
  const auto [out, copies] = together(shared, {});
  EXPECT_EQ(copies, 3u);
  for (const auto& r : shared)
    expect_alone(out, r);

  // The leader cancelled before it read the prompt hands the group on; a follower cancelled while
  // waiting ends at once.
  const auto cancelled = group(10, 78, 30);
  const auto [after_cancel, copied] = together(cancelled, {10, 13});
  EXPECT_EQ(after_cancel.at(10).result.reason, finish_reason::cancelled);
  EXPECT_EQ(after_cancel.at(13).result.reason, finish_reason::cancelled);
  EXPECT_EQ(copied, 1u); // 12 copies 11's
  expect_alone(after_cancel, cancelled[1]);
  expect_alone(after_cancel, cancelled[2]);

  // A request with the group's tag but another prompt reads its own prompt and leads nothing;
  // the rest of the group still shares the leader's.
  auto odd = group(20, 79, 20);
  odd[1].prompt = prompt(26, vocab, 4);
  const auto [odd_out, odd_copies] = together(odd, {});
  EXPECT_EQ(odd_copies, 2u);
  for (const auto& r : odd)
    expect_alone(odd_out, r);
}

// A KV cache of 12 blocks cannot hold 8 requests of ~40 tokens at once. With room in the host
// pool the batch is split: the overflow's KV goes to the host and it decodes in turns of its own,
// nothing recomputed. Without that room the newest requests give their KV back and are
// recomputed. Either way the tokens are those of a roomy instance and nothing leaks.
TEST_F(Instance, RequestsThatOutgrowTheKvCacheAreSplitOffOrRecomputedWithoutChange) {
  auto image = tiny_model(2);
  const auto vocab = image->config().vocab_size;
  const auto kv = image->config().kv(image->format().kv_type());
  auto roomy = spawn(image, {.max_batch_tokens = 64, .max_seqs = 8});
  const instance_options tight{.max_batch_tokens = 64,
                               .max_seqs = 8,
                               .kv_bytes = 12 * kv.block_bytes(),
                               .host_kv_bytes = 32 * kv.block_bytes(),
                               .slab_bytes = 4 * kv.block_bytes()};
  auto split = spawn(image, tight);
  auto no_host_room = tight;
  no_host_room.host_kv_bytes = 4 * kv.block_bytes(); // one slab: the overflow does not fit
  auto recompute = spawn(image, no_host_room);
  std::vector<generation_request> reqs;
  for (std::uint64_t i = 0; i < 8; ++i)
    reqs.push_back(request(i, prompt(20 + i, vocab, static_cast<std::uint32_t>(i)), 20));
  for (const auto& r : reqs)
    (*self_)->send(roomy, generate_atom::value, r);
  const auto expected = collect(reqs.size());
  const auto s = expect_solo_tokens(split, reqs, expected);
  EXPECT_GT(s.batch_splits, 0u);
  EXPECT_GT(s.swaps_out, 0u);
  EXPECT_EQ(s.preemptions, 0u) << "a split keeps the KV: nothing is recomputed";
  EXPECT_GT(expect_solo_tokens(recompute, reqs, expected).preemptions, 0u);
}

// A sink that asked for the end only hears no token; the request still runs to its length.
TEST_F(Instance, ARequestAskingOnlyForItsEndSendsItsSinkNoToken) {
  auto image = tiny_model();
  auto inst = spawn(image, {});
  auto r = request(1, prompt(6, image->config().vocab_size, 1), 7);
  r.delivery = token_delivery::none;
  (*self_)->send(inst, generate_atom::value, std::move(r));
  const auto got = collect(1);
  EXPECT_TRUE(got.at(1).tokens.empty());
  EXPECT_EQ(got.at(1).result.reason, finish_reason::length);
  EXPECT_EQ(got.at(1).result.completion_tokens, 7u);
}

// A sink that asked for batches gets the tokens a streamed twin gets, all before the end, in
// messages of at most most_tokens_per_batch, each token with its age (oldest first).
TEST_F(Instance, ARequestAskingForBatchesGetsEveryTokenBeforeItsEndWithItsAge) {
  auto image = tiny_model();
  auto inst = spawn(image, {});
  const auto p = prompt(6, image->config().vocab_size, 1);
  constexpr std::size_t n = 2 * most_tokens_per_batch + 4;
  auto batched = request(2, p, n);
  batched.delivery = token_delivery::batched;
  (*self_)->send(inst, generate_atom::value, request(1, p, n));
  (*self_)->send(inst, generate_atom::value, std::move(batched));
  const auto got = collect(2);
  ASSERT_EQ(got.at(1).tokens.size(), n);
  EXPECT_TRUE(got.at(1).batch_sizes.empty()) << "a streamed request gets no batch";
  EXPECT_EQ(got.at(2).tokens, got.at(1).tokens);
  EXPECT_EQ(got.at(2).batch_sizes,
            (std::vector<std::size_t>{most_tokens_per_batch, most_tokens_per_batch, 4}));
  const auto& ages = got.at(2).batch_ages;
  ASSERT_EQ(ages.size(), n);
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_GE(ages[i], 0) << "token " << i;
    if (i + 1 < n && i % most_tokens_per_batch != most_tokens_per_batch - 1)
      EXPECT_GE(ages[i], ages[i + 1]) << "token " << i << " is older than the next in its batch";
  }
  EXPECT_EQ(got.at(2).result.reason, finish_reason::length);
  EXPECT_EQ(got.at(2).result.completion_tokens, n);
}

TEST_F(Instance, CancellingFreesTheKvOfRunningAndWaitingRequests) {
  auto image = tiny_model();
  const auto vocab = image->config().vocab_size;
  auto inst = spawn(image, {.max_batch_tokens = 32, .max_seqs = 1}); // the second one waits
  (*self_)->send(inst, generate_atom::value, request(1, prompt(30, vocab, 1), 400));
  (*self_)->send(inst, generate_atom::value, request(2, prompt(10, vocab, 2), 400));
  (*self_)->send(inst, cancel_atom::value, std::uint64_t{2}); // still waiting
  std::size_t seen = 0;
  bool first_done = false, second_done = false;
  while (!first_done || !second_done)
    (*self_)->receive(
        [&](token_atom, std::uint64_t id, std::int32_t, const aeg::models::token_logprobs&) {
          EXPECT_EQ(id, 1u);
          if (++seen == 3)
            (*self_)->send(inst, cancel_atom::value, std::uint64_t{1}); // mid-decode
        },
        [&](done_atom, const generation_result& r) {
          EXPECT_EQ(r.reason, finish_reason::cancelled) << "request " << r.id;
          (r.id == 1 ? first_done : second_done) = true;
        });
  EXPECT_GE(seen, 3u);
  EXPECT_LT(seen, 400u);
  const auto s = stats(inst);
  EXPECT_EQ(s.kv_bytes_used, 0u);
  EXPECT_EQ(s.running + s.waiting, 0u);
  // Cancelling what has already ended is harmless.
  (*self_)->send(inst, cancel_atom::value, std::uint64_t{1});
  EXPECT_EQ(stats(inst).kv_bytes_used, 0u);
}

TEST_F(Instance, BadRequestsEndWithAnErrorThatSaysWhy) {
  auto image = tiny_model();
  const auto& cfg = image->config();
  auto inst = spawn(image);
  (*self_)->send(inst, generate_atom::value, request(1, {}, 4));
  (*self_)->send(inst, generate_atom::value,
                 request(2, prompt(cfg.context_length, cfg.vocab_size, 1), 4));
  (*self_)->send(inst, generate_atom::value,
                 request(3, {0, static_cast<std::int32_t>(cfg.vocab_size)}, 4));
  (*self_)->send(inst, generate_atom::value, request(4, {1, 2, 3}, 0));
  auto out = collect(4);
  EXPECT_NE(out[1].result.message.find("empty"), std::string::npos);
  EXPECT_NE(out[2].result.message.find("context"), std::string::npos);
  EXPECT_NE(out[3].result.message.find("vocabulary"), std::string::npos);
  EXPECT_NE(out[4].result.message.find("max_tokens"), std::string::npos);
  for (auto& [id, o] : out)
    EXPECT_EQ(o.result.reason, finish_reason::error) << id;
  // A duplicate id while the first is running is refused; the first is unaffected.
  (*self_)->send(inst, generate_atom::value, request(5, {1, 2, 3}, 30));
  (*self_)->send(inst, generate_atom::value, request(5, {4, 5}, 3));
  out = collect(2);
  EXPECT_EQ(out[5].result.reason, finish_reason::length);
  EXPECT_EQ(out[5].tokens.size(), 30u);
}

TEST_F(Instance, ARequestWhoseSinkDiesIsCancelled) {
  auto image = tiny_model();
  auto inst = spawn(image, {.max_batch_tokens = 32, .max_seqs = 4});
  // A sink that quits on its first token: the instance sees it go and frees the request's KV.
  auto sink = sys_->spawn([](caf::event_based_actor* self) -> caf::behavior {
    return {[=](token_atom, std::uint64_t, std::int32_t, const aeg::models::token_logprobs&) {
              self->quit();
            },
            [=](done_atom, const generation_result&) {}};
  });
  auto r = request(9, prompt(25, image->config().vocab_size, 3), 10000);
  r.sink = caf::actor_cast<generation_sink>(sink);
  (*self_)->send(inst, generate_atom::value, std::move(r));
  instance_stats s;
  for (int i = 0; i < 1000000; ++i) { // no sleeping: ask until the instance has caught up
    s = stats(inst);
    if (s.steps > 0 && s.running + s.waiting == 0)
      break;
  }
  EXPECT_EQ(s.running + s.waiting, 0u);
  EXPECT_EQ(s.kv_bytes_used, 0u);
  EXPECT_LT(s.tokens_generated, 10000u);
}

} // namespace
} // namespace aeg::actors
