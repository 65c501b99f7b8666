// The instance actor serving several models: switches with KV swapped out and back, models of
// different KV shapes in one pool, prompt chunks beside decoding requests, the real SmolLM2.

#include "tests/actors/instance_fixture.hpp"

namespace aeg::actors {
namespace {

// Three models on one instance, switched every step (turns of one step), the leaving model's KV
// swapped out to the host at every switch and back in on its return, the next model prefetched:
// every request still gets exactly the tokens it gets alone on an instance of its own model.
TEST_F(Instance, ThreeModelsSwitchedEveryStepGiveEachRequestItsSoloTokens) {
  const auto models = three_models();
  const auto reqs = per_model_requests(models, 4, 3, 9, 7, 30);
  const auto alone = alone_on_own_instances(models, reqs);
  const auto s = expect_solo_tokens(switching_every_step(models), reqs, alone);
  EXPECT_GE(s.switches, 60u);
  EXPECT_GT(s.prefetches, 0u);
  EXPECT_GT(s.swaps_out, 0u);
  EXPECT_GT(s.swaps_in, 0u);
  // The switch log keeps the latest switches, oldest first, each from the model before it.
  ASSERT_EQ(s.recent_switches.size(), std::min(s.switches, recent_switches_kept));
  std::size_t prefetched = 0;
  for (std::size_t i = 0; i < s.recent_switches.size(); ++i) {
    const auto& r = s.recent_switches[i];
    EXPECT_NE(r.from, r.to);
    EXPECT_GE(r.scale_up_seconds, 0) << "every switch's weights came in before the stats";
    prefetched += r.prefetched;
    if (i > 0) {
      EXPECT_EQ(r.from, s.recent_switches[i - 1].to);
      EXPECT_LE(r.seconds_ago, s.recent_switches[i - 1].seconds_ago);
    }
  }
  EXPECT_GT(prefetched, 0u);
}

// The same switching with cancels landing at random tokens: with a switch at every step, a
// sequence's KV is mostly on its way out to the host or back in, so the cancels land mid-swap.
// The cancelled requests stop (what they made is a prefix of their solo tokens), the others
// are untouched, and no KV block stays held on the device or the host.
TEST_F(Instance, CancelsDuringSwapsFreeEveryBlockAndDisturbNoOne) {
  const auto models = three_models();
  const auto reqs = per_model_requests(models, 6, 5, 7, 3, 24);
  const auto alone = alone_on_own_instances(models, reqs);
  auto shared = switching_every_step(models);
  std::mt19937 rng(11);
  std::map<std::uint64_t, std::size_t> cancel_at; // request -> tokens seen when cancelled
  for (const auto& r : reqs)
    if (rng() % 2 == 0)
      cancel_at[r.id] = 1 + rng() % 20;
  for (const auto& r : reqs)
    (*self_)->send(shared, generate_atom::value, r);
  std::map<std::uint64_t, outcome> got;
  std::size_t ended = 0;
  while (ended < reqs.size())
    (*self_)->receive(
        [&](token_atom, std::uint64_t rid, std::int32_t token, const aeg::models::token_logprobs&) {
          auto& o = got[rid];
          o.tokens.push_back(token);
          if (auto it = cancel_at.find(rid); it != cancel_at.end() && it->second == o.tokens.size())
            (*self_)->send(shared, cancel_atom::value, rid);
        },
        [&](done_atom, const generation_result& r) {
          got[r.id].result = r;
          ++ended;
        });
  std::size_t cancelled = 0;
  for (const auto& r : reqs) {
    const auto& o = got.at(r.id);
    const auto& solo = alone.at(r.id).tokens;
    if (cancel_at.count(r.id) != 0 && o.result.reason == finish_reason::cancelled) {
      ++cancelled;
      ASSERT_LE(o.tokens.size(), solo.size());
      EXPECT_TRUE(std::equal(o.tokens.begin(), o.tokens.end(), solo.begin())) << "request " << r.id;
      continue;
    }
    EXPECT_EQ(o.result.reason, finish_reason::length) << o.result.message;
    EXPECT_EQ(o.tokens, solo) << "request " << r.id;
  }
  EXPECT_GT(cancelled, 4u);
  const auto s = stats(shared);
  EXPECT_GT(s.swaps_out, 0u);
  EXPECT_EQ(s.kv_bytes_used, 0u);
  EXPECT_EQ(s.host_kv_bytes_used, 0u);
  EXPECT_EQ(s.running + s.waiting, 0u);
}

// Three models of three KV shapes on a device pool of three small slabs that holds about half
// of their KV: making room for one model means emptying slabs of another shape, whose blocks
// come back only once their copies to the host finish. Every request still gets its solo tokens
// and no block stays held.
TEST_F(Instance, ModelsOfDifferentKvShapesShareATightPool) {
  const auto models = three_models();
  const auto reqs = per_model_requests(models, 4, 3, 9, 7, 30);
  const auto alone = alone_on_own_instances(models, reqs);
  auto shared = spawn_many(models, {.kv_bytes = 3 * (64 << 10),
                                    .host_kv_bytes = 8 << 20,
                                    .slab_bytes = 64 << 10,
                                    .policy = [] { return sched::make_round_robin(4); }});
  EXPECT_GT(expect_solo_tokens(shared, reqs, alone).swaps_out, 0u);
}

// The same with almost no host room: another model's KV often cannot move out, so a model
// finds no room for its step. It must wait for the others to drain (the policy passes it over
// meanwhile), not fail its requests: every request still gets its solo tokens.
TEST_F(Instance, AModelBlockedByOthersKvWaitsForItInsteadOfFailing) {
  const auto models = three_models();
  const auto reqs = per_model_requests(models, 6, 20, 9, 7, 40);
  const auto alone = alone_on_own_instances(models, reqs);
  auto shared = spawn_many(models, {.kv_bytes = 2 * (64 << 10),
                                    .host_kv_bytes = 64 << 10,
                                    .slab_bytes = 64 << 10,
                                    .policy = [] { return sched::make_round_robin(4); }});
  expect_solo_tokens(shared, reqs, alone);
}

TEST_F(Instance, ARequestForAModelItDoesNotServeSaysWhichItServes) {
  auto inst = spawn_many(three_models());
  auto r = request(1, {1, 2, 3}, 4);
  r.model = "m7";
  (*self_)->send(inst, generate_atom::value, r);
  const auto out = collect(1);
  EXPECT_EQ(out.at(1).result.reason, finish_reason::error);
  EXPECT_NE(out.at(1).result.message.find("m0, m1, m2"), std::string::npos)
      << out.at(1).result.message;
}

// The real model: 16 concurrent greedy requests give each one's solo tokens.
// A long prompt arriving while a request decodes goes in chunks sized to what the decoding
// request can spare before its next token is due: with SLOs no step can meet, each shared step
// halves the chunk (down to 16 tokens), so the decoding request gets many tokens while the
// prompt is read; with SLOs every step meets, the prompt takes the whole token budget.
TEST_F(Instance, PromptChunksBesideDecodingRequestsShrinkToKeepTheirTbt) {
  auto image = tiny_model();
  const auto vocab = image->config().vocab_size;
  // The steps beside the long prompt, counted in the decoding request's tokens (one a step):
  // from the instance's own count when it took the prompt (the stats request queues behind it)
  // to the long request's end, which reaches this thread after every token sent before it (one
  // sender, one receiver: in order). However late this thread reacts, the count is the same.
  auto steps_while_prefilling = [&](double tbt) {
    auto inst = spawn_many(
        {{"m", image, tbt, tbt}},
        {.max_batch_tokens = 128, .max_seqs = 4, .kv_bytes = 4 << 20, .slab_bytes = 1 << 20});
    (*self_)->send(inst, generate_atom::value, request(1, prompt(8, vocab, 1), 300));
    std::size_t made_at_arrival = 0, made_by_end = 0, received = 0;
    bool long_done = false;
    while (!long_done)
      (*self_)->receive(
          [&](token_atom, std::uint64_t id, std::int32_t, const aeg::models::token_logprobs&) {
            if (id != 1)
              return;              // the long request's one token
            if (++received == 1) { // decoding: now the long prompt arrives
              (*self_)->send(inst, generate_atom::value, request(2, prompt(400, vocab, 2), 1));
              made_at_arrival = stats(inst).tokens_generated; // request 1's alone so far
            }
          },
          [&](done_atom, const generation_result& r) {
            EXPECT_EQ(r.id, 2u) << r.message;
            EXPECT_EQ(r.reason, finish_reason::length) << r.message;
            made_by_end = received;
            long_done = true;
          });
    (*self_)->send(inst, cancel_atom::value, std::uint64_t{1});
    collect(1);
    EXPECT_EQ(stats(inst).kv_bytes_used, 0u);
    return made_by_end - made_at_arrival;
  };
  EXPECT_GE(steps_while_prefilling(1e-9), 10u); // 127, 63, 31, then 16 at a time
  EXPECT_LE(steps_while_prefilling(1e6), 6u);   // 4 steps of the whole budget
}

// A short request arriving while a long prompt is being read does not wait for all of it: the
// long prompt leaves room in each step, so the short one's first token comes first; both get
// their solo tokens.
TEST_F(Instance, AShortRequestBehindALongPromptStartsBeforeItEnds) {
  auto image = tiny_model();
  const auto vocab = image->config().vocab_size;
  const auto long_one = request(1, prompt(440, vocab, 1), 4);
  const auto short_one = request(2, prompt(6, vocab, 2), 4);
  // Both instances share the test's device: each takes a KV pool of its own size.
  const instance_options o{
      .max_batch_tokens = 64, .max_seqs = 4, .kv_bytes = 4 << 20, .slab_bytes = 1 << 20};
  auto solo = spawn(image, o);
  std::map<std::uint64_t, outcome> alone;
  for (const auto& r : {long_one, short_one}) {
    (*self_)->send(solo, generate_atom::value, r);
    alone.merge(collect(1));
  }
  auto inst = spawn(image, o);
  (*self_)->send(inst, generate_atom::value, long_one);
  (*self_)->send(inst, generate_atom::value, short_one);
  std::vector<std::uint64_t> first_tokens; // request ids in the order their first token came
  std::map<std::uint64_t, outcome> together;
  std::size_t ended = 0;
  while (ended < 2)
    (*self_)->receive(
        [&](token_atom, std::uint64_t id, std::int32_t token, const aeg::models::token_logprobs&) {
          if (together[id].tokens.empty())
            first_tokens.push_back(id);
          together[id].tokens.push_back(token);
        },
        [&](done_atom, const generation_result& r) {
          together[r.id].result = r;
          ++ended;
        });
  EXPECT_EQ(first_tokens, (std::vector<std::uint64_t>{2, 1}))
      << "440 prompt tokens take 7 steps of 64: the 6-token request must not wait for them";
  for (std::uint64_t id : {1, 2}) {
    EXPECT_EQ(together.at(id).result.reason, finish_reason::length);
    EXPECT_EQ(together.at(id).tokens, alone.at(id).tokens) << "request " << id;
  }
  EXPECT_EQ(stats(inst).kv_bytes_used, 0u);
}

TEST_F(Instance, SmolLM2AnswersSixteenConcurrentRequestsAsItAnswersEachAlone) {
  const std::string path = std::string(AEG_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path))
    GTEST_SKIP() << path << " is missing; run scripts/fetch-model to download it";
  auto f = models::gguf::file::open(path);
  ASSERT_TRUE(f.has_value());
  auto tok = models::tokenizer::from_gguf(*f);
  ASSERT_TRUE(tok.has_value());
  auto image =
      models::load_llama(*f, models::compute_format::for_backend(gpu::backend_kind::cpu), *dev_);
  ASSERT_TRUE(image.has_value());
  auto inst = spawn(*image, {.max_batch_tokens = 256, .max_seqs = 16});
  const char* topics[] = {"The capital of France is",
                          "Water boils at",
                          "The largest planet is",
                          "In 1969, the first person to walk on the Moon was",
                          "A haiku about autumn:",
                          "def fibonacci(n):",
                          "The speed of light is",
                          "Photosynthesis is the process by which",
                          "My favourite recipe for pancakes starts with",
                          "The three primary colours are",
                          "Once upon a time",
                          "To be or not to be",
                          "The Pythagorean theorem states that",
                          "Mount Everest is located in",
                          "SELECT name FROM users WHERE",
                          "The French word for cat is"};
  std::vector<generation_request> reqs;
  for (std::uint64_t i = 0; i < 16; ++i)
    reqs.push_back(request(i, tok->encode(topics[i], false), 12));
  std::map<std::uint64_t, outcome> alone;
  for (const auto& r : reqs) {
    (*self_)->send(inst, generate_atom::value, r);
    alone.merge(collect(1));
  }
  for (const auto& r : reqs)
    (*self_)->send(inst, generate_atom::value, r);
  const auto together = collect(reqs.size());
  for (const auto& r : reqs)
    EXPECT_EQ(together.at(r.id).tokens, alone.at(r.id).tokens)
        << topics[r.id] << " -> " << tok->decode(alone.at(r.id).tokens);
  EXPECT_EQ(tok->decode(alone.at(0).tokens).rfind(" Paris", 0), 0u);
  const auto s = stats(inst);
  EXPECT_EQ(s.kv_bytes_used, 0u);
}

} // namespace
} // namespace aeg::actors
