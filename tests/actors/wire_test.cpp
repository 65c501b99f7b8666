// The messages that may cross nodes survive CAF's binary serialisation, alone and inside a
// caf::message looked up by the names actors/wire.cpp gives them (as the network layer does).
#include "actors/instance.hpp"
#include "actors/wire.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/message.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <gtest/gtest.h>

namespace aeg::actors {
namespace {

class Wire : public ::testing::Test {
protected:
  Wire() : sys_(configured(cfg_)) {}
  // A serialised handle puts its actor in the registry (for other nodes to find), which keeps
  // it alive: end the actors, or the system waits for them forever.
  ~Wire() override {
    if (sink_)
      caf::anon_send_exit(sink_, caf::exit_reason::user_shutdown);
    if (handoff_)
      caf::anon_send_exit(handoff_, caf::exit_reason::user_shutdown);
  }

  static caf::actor_system_config& configured(caf::actor_system_config& cfg) {
    add_message_types(cfg);
    return cfg;
  }

  template <class T>
  T round_trip(const T& x) {
    std::vector<char> buf;
    caf::binary_serializer out(sys_, buf);
    auto copy = x;
    EXPECT_FALSE(out(copy));
    T back;
    caf::binary_deserializer in(sys_, buf);
    EXPECT_FALSE(in(back));
    return back;
  }

  // A request with every field set, its sink and hand-off a real actor.
  generation_request request() {
    sink_ = sys_.spawn([]() -> generation_sink::behavior_type {
      return {[](token_atom, std::uint64_t, std::int32_t, const aeg::models::token_logprobs&) {},
              [](tokens_atom, std::uint64_t, const token_batch&) {},
              [](done_atom, generation_result) {}};
    });
    handoff_ = sys_.spawn([]() -> handoff_sink::behavior_type {
      return {[](handoff_atom, decode_job) {}, [](handoff_atom, parked_job) {}};
    });
    generation_request r;
    r.id = 42;
    r.model = "qwen2.5-7b";
    r.prompt = {1, 2, 3, 151643};
    r.sampling = {0.7f, 40, 0.9f, 1234};
    r.max_tokens = 77;
    r.logprobs = 3;
    r.prompt_group = 5;
    r.stop_tokens = {2, 151645};
    r.sink = sink_;
    r.delivery = token_delivery::batched;
    r.handoff = handoff_;
    r.generated_before = 3;
    r.arrived = std::chrono::steady_clock::now() - std::chrono::seconds(5);
    return r;
  }

  void expect_same(const generation_request& a, const generation_request& b) {
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.model, b.model);
    EXPECT_EQ(a.prompt, b.prompt);
    EXPECT_EQ(a.sampling.temperature, b.sampling.temperature);
    EXPECT_EQ(a.sampling.top_k, b.sampling.top_k);
    EXPECT_EQ(a.sampling.top_p, b.sampling.top_p);
    EXPECT_EQ(a.sampling.seed, b.sampling.seed);
    EXPECT_EQ(a.max_tokens, b.max_tokens);
    EXPECT_EQ(a.logprobs, b.logprobs);
    EXPECT_EQ(a.prompt_group, b.prompt_group);
    EXPECT_EQ(a.stop_tokens, b.stop_tokens);
    EXPECT_EQ(a.sink, b.sink);
    EXPECT_EQ(a.delivery, b.delivery);
    EXPECT_EQ(a.handoff, b.handoff);
    EXPECT_EQ(a.generated_before, b.generated_before);
    // The arrival travels as an age: the same instant, later by the time in transit only.
    EXPECT_GE(b.arrived, a.arrived);
    EXPECT_LE(b.arrived, std::chrono::steady_clock::now());
  }

  caf::actor_system_config cfg_;
  caf::actor_system sys_;
  generation_sink sink_;
  handoff_sink handoff_;
};

TEST_F(Wire, ARequestKeepsEveryFieldAndItsActors) {
  const auto r = request();
  expect_same(r, round_trip(r));
  generation_request unset;
  EXPECT_EQ(round_trip(unset).arrived, std::chrono::steady_clock::time_point{});
}

// A hand-off parked at another node's desk travels as a ticket, the desk's handle and what the
// front end's estimates learn from it.
TEST_F(Wire, AParkedJobKeepsItsTicketDeskAndMeasurements) {
  auto desk = sys_.spawn([]() -> caf::behavior { return {[](cancel_atom, std::uint64_t) {}}; });
  parked_job p{99, desk, desk.address(), 512, 0.75, 8e9, {}};
  p.service.prefill_execute = 0.5;
  const auto back = round_trip(p);
  EXPECT_EQ(back.ticket, 99u);
  EXPECT_EQ(back.desk, desk);
  EXPECT_EQ(back.prefill, desk.address());
  EXPECT_EQ(back.prompt_tokens, 512u);
  EXPECT_EQ(back.prefill_seconds, 0.75);
  EXPECT_EQ(back.switch_bytes_per_second, 8e9);
  EXPECT_EQ(back.service.prefill_execute, 0.5);
  // Looked up by its name, as the network layer does.
  const auto again = round_trip(caf::make_message(handoff_atom::value, p));
  ASSERT_TRUE((again.match_elements<handoff_atom, parked_job>()));
  EXPECT_EQ(again.get_as<parked_job>(1).ticket, 99u);
  caf::anon_send_exit(desk, caf::exit_reason::user_shutdown);
}

// A batch of tokens crosses by name with each token's age.
TEST_F(Wire, ATokenBatchKeepsItsTokensAndTheirAges) {
  const token_batch b{{5, 6, 7}, {3'000'000, 2'000'000, 0}};
  const auto again = round_trip(caf::make_message(tokens_atom::value, std::uint64_t{9}, b));
  ASSERT_TRUE((again.match_elements<tokens_atom, std::uint64_t, token_batch>()));
  EXPECT_EQ(again.get_as<token_batch>(2).tokens, b.tokens);
  EXPECT_EQ(again.get_as<token_batch>(2).ages_ns, b.ages_ns);
}

TEST_F(Wire, ResultsAndStatsKeepEveryField) {
  generation_result res{7, finish_reason::unavailable, 12, 34, "the instance stopped", {}};
  res.service = {0.5, 0.25, 0.125, 2.5, 0.0625, 0.75};
  const auto back = round_trip(res);
  EXPECT_EQ(back.id, 7u);
  EXPECT_EQ(back.reason, finish_reason::unavailable);
  EXPECT_EQ(back.prompt_tokens, 12u);
  EXPECT_EQ(back.completion_tokens, 34u);
  EXPECT_EQ(back.message, "the instance stopped");
  EXPECT_EQ(back.service.prefill_execute, 0.5);
  EXPECT_EQ(back.service.prefill_kv_wait, 0.25);
  EXPECT_EQ(back.service.prefill_held, 0.125);
  EXPECT_EQ(back.service.decode_execute, 2.5);
  EXPECT_EQ(back.service.decode_kv_wait, 0.0625);
  EXPECT_EQ(back.service.decode_held, 0.75);

  instance_stats s;
  s.kv_bytes_used = 1 << 20;
  s.host_kv_bytes_used = 3;
  s.kv_fragmentation = 0.25;
  s.running = 4;
  s.waiting = 5;
  s.steps = 6;
  s.tokens_generated = 7;
  s.preemptions = 8;
  s.batch_splits = 9;
  s.switches = 10;
  s.prefetches = 11;
  s.swaps_out = 12;
  s.swaps_in = 13;
  s.weight_bytes_copied = 14;
  s.kv_bytes_swapped = 15;
  s.scale_up_seconds = 1.5;
  s.steps_repeated = 16;
  s.step_seconds = 2.25;
  s.decode_steps = 17;
  s.decode_sequences = 18;
  s.decode_step_seconds = 1.75;
  s.active = "llama-3-8b";
  s.staged = "qwen2.5-7b";
  s.ready = true;
  s.recent_switches = {{2.5, "", "qwen2.5-7b", 0.75, false},
                       {0.5, "qwen2.5-7b", "llama-3-8b", -1, true}};
  const auto t = round_trip(s);
  EXPECT_EQ(t.kv_bytes_used, s.kv_bytes_used);
  EXPECT_EQ(t.host_kv_bytes_used, 3u);
  EXPECT_EQ(t.kv_fragmentation, 0.25);
  EXPECT_EQ(t.running + t.waiting + t.steps + t.tokens_generated + t.preemptions + t.batch_splits +
                t.switches + t.prefetches + t.swaps_out + t.swaps_in + t.weight_bytes_copied +
                t.kv_bytes_swapped,
            4u + 5 + 6 + 7 + 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15);
  EXPECT_EQ(t.switches, 10u);
  EXPECT_EQ(t.scale_up_seconds, 1.5);
  EXPECT_EQ(t.steps_repeated, 16u);
  EXPECT_EQ(t.decode_steps, 17u);
  EXPECT_EQ(t.decode_sequences, 18u);
  EXPECT_EQ(t.step_seconds, 2.25);
  EXPECT_EQ(t.decode_step_seconds, 1.75);
  EXPECT_EQ(t.active, "llama-3-8b");
  EXPECT_EQ(t.staged, "qwen2.5-7b");
  EXPECT_TRUE(t.ready);
  ASSERT_EQ(t.recent_switches.size(), 2u);
  EXPECT_EQ(t.recent_switches[0].seconds_ago, 2.5);
  EXPECT_EQ(t.recent_switches[0].from, "");
  EXPECT_EQ(t.recent_switches[0].to, "qwen2.5-7b");
  EXPECT_EQ(t.recent_switches[0].scale_up_seconds, 0.75);
  EXPECT_EQ(t.recent_switches[1].from, "qwen2.5-7b");
  EXPECT_EQ(t.recent_switches[1].scale_up_seconds, -1);
  EXPECT_TRUE(t.recent_switches[1].prefetched);
}

// A whole message, as the network layer sends it: the receiving side finds the element types by
// their names, which only the registered ones have.
TEST_F(Wire, AMessageOfARegisteredTypeCrossesByName) {
  const auto r = request();
  auto msg = caf::make_message(generate_atom::value, r);
  std::vector<char> buf;
  caf::binary_serializer out(sys_, buf);
  ASSERT_FALSE(out(msg));
  caf::message back;
  caf::binary_deserializer in(sys_, buf);
  ASSERT_FALSE(in(back));
  ASSERT_TRUE((back.match_elements<generate_atom, generation_request>()));
  expect_same(r, back.get_as<generation_request>(1));

  // Without the names, the same bytes cannot be read back.
  caf::actor_system_config plain;
  caf::actor_system other(plain);
  caf::message lost;
  caf::binary_deserializer in_other(other, buf);
  const auto err = in_other(lost);
  EXPECT_TRUE(err || !(lost.match_elements<generate_atom, generation_request>()))
      << "size " << lost.size();
}

} // namespace
} // namespace aeg::actors
