// Pools of CPU devices with tiny models, on CAF's real scheduler: hundreds of concurrent requests
// across models must all complete with the tokens each gets alone, whatever the topology, and
// leave no KV block held; cancellations and a dying instance must not lose or hang anything.

#include "actors/generation.hpp"
#include "actors/pool.hpp"
#include "tests/support/tiny_llama.hpp"

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

namespace fs = std::filesystem;

struct outcome {
  std::vector<std::int32_t> tokens;
  generation_result result;
  bool done = false;
};

class Pool : public ::testing::Test {
protected:
  Pool() {
    cfg_.set("logger.verbosity", caf::atom("quiet"));
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    self_ = std::make_unique<caf::scoped_actor>(*sys_);
    dir_ = fs::temp_directory_path() / ("aeg-pool-" + std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
  }
  ~Pool() override {
    pools_.clear();
    self_.reset();
    fs::remove_all(dir_);
  }

  // `n` tiny models of a few shapes, written as GGUF files.
  std::vector<model_spec> tiny_models(std::size_t n) {
    std::vector<model_spec> out;
    for (std::size_t i = 0; i < n; ++i) {
      aeg::testing::tiny_llama_spec t;
      t.seed = 100 + static_cast<std::uint32_t>(i);
      t.layers = 2 + i % 2;
      t.dim = i % 3 == 2 ? 96 : 64;
      t.heads = t.dim / 32; // head width 32: KV widths stay multiples of 32
      t.kv_heads = 1;
      t.ffn = 2 * t.dim;
      const auto path = (dir_ / ("m" + std::to_string(i) + ".gguf")).string();
      EXPECT_TRUE(aeg::testing::write_tiny_llama(t, path));
      model_spec m;
      m.name = "m" + std::to_string(i);
      m.source.gguf_path = path;
      out.push_back(m);
    }
    return out;
  }

  // One model of shape `t`, written as a GGUF file and named `name`.
  std::vector<model_spec> one_model(const aeg::testing::tiny_llama_spec& t,
                                    const std::string& name) {
    const auto path = (dir_ / (name + ".gguf")).string();
    EXPECT_TRUE(aeg::testing::write_tiny_llama(t, path));
    std::vector<model_spec> models(1);
    models[0].name = name;
    models[0].source.gguf_path = path;
    return models;
  }

  pool_spec spec(std::vector<model_spec> models, std::vector<instance_role> roles) {
    pool_spec s;
    s.models = std::move(models);
    for (std::size_t i = 0; i < roles.size(); ++i) {
      s.devices.push_back({"cpu" + std::to_string(i), "cpu", static_cast<int>(i), 96 << 20});
      instance_spec is;
      is.device = "cpu" + std::to_string(i);
      is.role = roles[i];
      is.kv_bytes = 16 << 20;
      is.max_batch_tokens = 96;
      is.max_seqs = 16;
      s.instances.push_back(is);
    }
    s.host_kv_bytes = 64 << 20;
    s.slab_bytes = 1 << 20;
    return s;
  }

  pool& start(const pool_spec& s) {
    auto p = pool::start(*sys_, s);
    EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().to_string());
    pools_.push_back(std::move(*p));
    return *pools_.back();
  }

  generation_request request(std::uint64_t id, const std::string& model, std::size_t prompt_len,
                             std::size_t max_tokens) {
    generation_request r;
    r.id = id;
    r.model = model;
    for (std::size_t k = 0; k < prompt_len; ++k)
      r.prompt.push_back(static_cast<std::int32_t>((k * 131 + id * 7) % 300));
    r.max_tokens = max_tokens;
    r.sink = caf::actor_cast<generation_sink>(*self_);
    return r;
  }

  // Submits `reqs` to `proxy`; returns the pool's ids by client id.
  std::map<std::uint64_t, std::uint64_t> submit(const proxy_actor& proxy,
                                                const std::vector<generation_request>& reqs) {
    std::map<std::uint64_t, std::uint64_t> ids;
    for (const auto& r : reqs)
      (*self_)
          ->request(proxy, caf::infinite, submit_atom::value, r)
          .receive([&](std::uint64_t id) { ids[r.id] = id; },
                   [&](caf::error& e) { ADD_FAILURE() << sys_->render(e); });
    return ids;
  }

  std::map<std::uint64_t, outcome>
  collect(std::size_t n, const std::function<void(std::uint64_t, std::size_t)>& on_token = {}) {
    std::map<std::uint64_t, outcome> out;
    std::size_t ended = 0;
    while (ended < n)
      (*self_)->receive(
          [&](token_atom, std::uint64_t id, std::int32_t token) {
            out[id].tokens.push_back(token);
            if (on_token)
              on_token(id, out[id].tokens.size());
          },
          [&](done_atom, const generation_result& r) {
            EXPECT_FALSE(out[r.id].done) << "request " << r.id << " ended twice";
            out[r.id].result = r;
            out[r.id].done = true;
            ++ended;
          });
    return out;
  }

  // The tokens of each request alone on a one-model instance.
  std::map<std::uint64_t, std::vector<std::int32_t>>
  solo(const std::vector<model_spec>& models, const std::vector<generation_request>& reqs) {
    std::map<std::uint64_t, std::vector<std::int32_t>> out;
    for (const auto& m : models) {
      auto s = spec({m}, {instance_role::colocated});
      auto& p = start(s);
      for (const auto& r : reqs)
        if (r.model == m.name) {
          submit(p.proxy(), {r});
          out[r.id] = collect(1).at(r.id).tokens;
        }
    }
    return out;
  }

  // Each request ran to its length with its solo tokens, or, where `may_cancel` says it was
  // cancelled, ended cancelled with a prefix of them. Returns how many ended cancelled.
  std::size_t
  expect_solo_unless_cancelled(const std::map<std::uint64_t, outcome>& got,
                               const std::vector<generation_request>& reqs,
                               const std::map<std::uint64_t, std::vector<std::int32_t>>& expected,
                               const std::function<bool(std::uint64_t)>& may_cancel) {
    std::size_t cancelled = 0;
    for (const auto& r : reqs) {
      const auto& o = got.at(r.id);
      const auto& solo = expected.at(r.id);
      if (may_cancel(r.id) && o.result.reason == finish_reason::cancelled) {
        ++cancelled;
        EXPECT_LE(o.tokens.size(), solo.size()) << "request " << r.id;
        EXPECT_TRUE(o.tokens.size() <= solo.size() &&
                    std::equal(o.tokens.begin(), o.tokens.end(), solo.begin()))
            << "request " << r.id;
        continue;
      }
      EXPECT_EQ(o.result.reason, finish_reason::length) << o.result.message;
      EXPECT_EQ(o.tokens, solo) << "request " << r.id;
    }
    return cancelled;
  }
  // `dead`: instances killed by the test (they cannot answer).
  void expect_nothing_held(pool& p, const std::set<std::size_t>& dead = {}) {
    for (std::size_t i = 0; i < p.instances().size(); ++i) {
      if (dead.count(i) != 0)
        continue;
      const auto& inst = p.instances()[i];
      instance_stats s;
      (*self_)
          ->request(inst, caf::infinite, stats_atom::value)
          .receive([&](const instance_stats& st) { s = st; },
                   [&](caf::error& e) { ADD_FAILURE() << sys_->render(e); });
      EXPECT_EQ(s.kv_bytes_used, 0u);
      EXPECT_EQ(s.host_kv_bytes_used, 0u);
      EXPECT_EQ(s.running + s.waiting, 0u);
    }
    pool_metrics m;
    (*self_)
        ->request(p.proxy(), caf::infinite, metrics_atom::value)
        .receive([&](const pool_metrics& pm) { m = pm; },
                 [&](caf::error& e) { ADD_FAILURE() << sys_->render(e); });
    EXPECT_TRUE(m.in_flight_by_model.empty());
    EXPECT_TRUE(m.queued_by_model.empty());
  }

  // The memory the plan gives the first device of `s` (on the CPU backend).
  std::size_t planned(const pool_spec& s) {
    auto plans =
        device_memory_needed(s, models::compute_format::for_backend(gpu::backend_kind::cpu));
    EXPECT_TRUE(plans) << plans.error().to_string();
    return plans ? plans->front().total() : 0;
  }

  // A pool of `s` starts, runs a request of m0 and one of m1 to their length, and holds nothing
  // afterwards.
  void starts_and_serves(const pool_spec& s) {
    auto& p = start(s);
    ASSERT_TRUE(p.wait_started(*sys_)) << "a device of the planned size must start";
    const std::vector<generation_request> reqs = {request(1, "m0", 20, 8), request(2, "m1", 20, 8)};
    submit(p.proxy(), reqs);
    const auto got = collect(reqs.size());
    for (const auto& r : reqs)
      EXPECT_EQ(got.at(r.id).result.reason, finish_reason::length) << got.at(r.id).result.message;
    expect_nothing_held(p);
  }

  std::vector<generation_request> workload(const std::vector<model_spec>& models, std::size_t n,
                                           std::size_t max_tokens) {
    std::vector<generation_request> reqs;
    for (std::uint64_t i = 0; i < n; ++i)
      reqs.push_back(request(i, models[i % models.size()].name, 3 + (i * 5) % 40, max_tokens));
    return reqs;
  }

  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<caf::scoped_actor> self_;
  fs::path dir_;
  std::vector<std::unique_ptr<pool>> pools_;
};

TEST_F(Pool, ThreeModelsOnOneColocatedDevice) {
  const auto models = tiny_models(3);
  const auto reqs = workload(models, 240, 8);
  const auto expected = solo(models, reqs);
  auto& p = start(spec(models, {instance_role::colocated}));
  submit(p.proxy(), reqs);
  const auto got = collect(reqs.size());
  for (const auto& r : reqs) {
    EXPECT_EQ(got.at(r.id).result.reason, finish_reason::length) << got.at(r.id).result.message;
    EXPECT_EQ(got.at(r.id).tokens, expected.at(r.id)) << "request " << r.id;
  }
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
  for (const auto& r : reqs) {
    EXPECT_EQ(got.at(r.id).result.reason, finish_reason::length) << got.at(r.id).result.message;
    EXPECT_EQ(got.at(r.id).tokens, expected.at(r.id)) << "request " << r.id;
  }
  pool_metrics m;
  (*self_)
      ->request(p.proxy(), caf::infinite, metrics_atom::value)
      .receive([&](const pool_metrics& pm) { m = pm; }, [](caf::error&) {});
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
  expect_solo_unless_cancelled(got, {long_one, short_one}, expected,
                               [](std::uint64_t) { return false; });
  expect_nothing_held(p);
}

// KV blocks larger than a quarter of the configured slab (as a 7B or 13B model's are on a GPU
// beside the 16 MiB default) still travel from prefill to decode: the node's host pool makes its
// slabs as large as its devices' do.
TEST_F(Pool, KvBlocksLargerThanAQuarterSlabTravelFromPrefillToDecode) {
  aeg::testing::tiny_llama_spec t;
  t.layers = 72; // 72 layers of one 64-wide KV head pair in f16: 288 KiB blocks
  t.dim = 64;
  t.heads = 2;
  t.kv_heads = 2;
  t.ffn = 64;
  const auto models = one_model(t, "deep");
  auto s = spec(models, {instance_role::prefill, instance_role::decode});
  s.slab_bytes = 1 << 20; // blocks over a quarter of it
  ASSERT_GT(models::plan_footprint(models[0].source,
                                   models::compute_format::for_backend(gpu::backend_kind::cpu))
                ->kv_block_bytes,
            s.slab_bytes / 4);
  const auto reqs = workload(models, 3, 4);
  const auto expected = solo(models, reqs);
  auto& p = start(s);
  submit(p.proxy(), reqs);
  const auto got = collect(reqs.size());
  for (const auto& r : reqs) {
    EXPECT_EQ(got.at(r.id).result.reason, finish_reason::length) << got.at(r.id).result.message;
    EXPECT_EQ(got.at(r.id).tokens, expected.at(r.id)) << "request " << r.id;
  }
  expect_nothing_held(p);
}

// A host KV pool smaller than one slab of the models' blocks is refused at start, with the size
// to give, instead of failing every hand-off later.
TEST_F(Pool, AHostKvPoolThatHoldsNoSlabOfTheModelsBlocksIsRefusedAtStart) {
  aeg::testing::tiny_llama_spec t;
  t.layers = 72;
  t.dim = 64;
  t.heads = 2;
  t.kv_heads = 2;
  t.ffn = 64;
  const auto models = one_model(t, "deep");
  auto s = spec(models, {instance_role::prefill, instance_role::decode});
  s.host_kv_bytes = 1 << 20;
  auto p = pool::start(*sys_, s);
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message.find("give host_kv_mib 2 or more"), std::string::npos)
      << p.error().message;
}

// Cancels at random moments: before placement, during prefill, between prefill and decode,
// during decode. The others must get their solo tokens; nothing may stay held.
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
  for (const auto& r : reqs) {
    EXPECT_EQ(got.at(r.id).result.reason, finish_reason::length) << got.at(r.id).result.message;
    EXPECT_EQ(got.at(r.id).tokens, expected.at(r.id)) << "request " << r.id;
  }
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
  std::size_t rerouted = 0;
  for (const auto& r : reqs) {
    EXPECT_EQ(got.at(r.id).result.reason, finish_reason::length) << got.at(r.id).result.message;
    EXPECT_EQ(got.at(r.id).tokens, expected.at(r.id)) << "request " << r.id;
  }
  pool_metrics m;
  (*self_)
      ->request(p.proxy(), caf::infinite, metrics_atom::value)
      .receive([&](const pool_metrics& pm) { m = pm; }, [](caf::error&) {});
  for (const auto& f : m.finished)
    rerouted += f.rerouted;
  EXPECT_GT(rerouted, 0u);
  EXPECT_EQ(m.instances_alive, 2u);
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

TEST_F(Pool, UnknownModelsAreRefusedWithTheCatalog) {
  const auto models = tiny_models(2);
  auto& p = start(spec(models, {instance_role::colocated}));
  std::string message;
  (*self_)
      ->request(p.proxy(), caf::infinite, submit_atom::value, request(1, "nope", 3, 2))
      .receive([](std::uint64_t) { ADD_FAILURE() << "accepted"; },
               [&](caf::error& e) { message = sys_->render(e); });
  EXPECT_NE(message.find("unknown model 'nope'"), std::string::npos) << message;
  EXPECT_NE(message.find("m0, m1"), std::string::npos) << message;
}

// A device too small for its instances is named before any model loads (not by an instance
// after the loading), and a device of exactly the size the plan gives starts and serves.
TEST_F(Pool, ADeviceTooSmallForItsInstancesIsNamedBeforeAnyModelLoads) {
  auto s = spec(tiny_models(2), {instance_role::colocated});
  const std::size_t exact = planned(s);

  s.devices[0].memory_bytes = exact - 1024;
  std::vector<std::string> loaded;
  auto refused = pool::start(
      *sys_, s, [&](const std::string& m, std::size_t, std::size_t) { loaded.push_back(m); });
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::out_of_memory);
  EXPECT_NE(refused.error().message.find("device 'cpu0'"), std::string::npos)
      << refused.error().message;
  EXPECT_NE(refused.error().message.find("step buffers"), std::string::npos);
  EXPECT_TRUE(loaded.empty());

  s.devices[0].memory_bytes = exact;
  starts_and_serves(s);
}

// With no kv_mib the KV pool takes what is left, and an instance of several models keeps room to
// prefetch one beside the other when the device has it: the plan counts that room when the
// instance would take it, so a device of the planned size still gets its KV slab.
TEST_F(Pool, ADeviceOfThePlannedSizeStartsWithAnUnsizedKvPoolAndSeveralModels) {
  auto s = spec(tiny_models(2), {instance_role::colocated});
  s.instances[0].kv_bytes = 0;
  s.slab_bytes = 8 << 20; // a slab larger than the models: the room to prefetch would take it
  s.devices[0].memory_bytes = planned(s);
  starts_and_serves(s);
}

// Instances that share a device each get what the plan gives them, whichever starts first: none
// takes room to prefetch or KV out of the memory planned for the other, with kv_mib or without.
TEST_F(Pool, InstancesSharingADeviceOfThePlannedSizeAllStart) {
  const auto models = tiny_models(2);
  for (const std::size_t kv : {std::size_t{16} << 20, std::size_t{0}}) {
    SCOPED_TRACE(kv == 0 ? "unsized KV pools" : "sized KV pools");
    auto s = spec(models, {instance_role::prefill, instance_role::decode});
    s.devices.pop_back();
    for (auto& is : s.instances) {
      is.device = s.devices[0].name;
      is.kv_bytes = kv;
    }
    s.devices[0].memory_bytes = planned(s);
    starts_and_serves(s);
  }
}

TEST(Topology, ErrorsPointAtTheBadField) {
  const std::string good = R"({
    "devices": [{"name": "g0", "backend": "cpu", "memory_mib": 512}],
    "models": [{"name": "a", "synthetic": "smollm2-135m", "tbt_s": 0.2,
                "max_prompt_tokens": 2048, "chat_template": "llama3"}],
    "instances": [{"device": "g0", "role": "colocated"}],
    "policy": {"routing": "aegaeon", "decode": "weighted_round_robin"}})";
  auto ok = parse_topology(good);
  ASSERT_TRUE(ok.has_value()) << ok.error().to_string();
  EXPECT_EQ(ok->models[0].tbt_seconds, 0.2);
  EXPECT_EQ(ok->models[0].max_prompt_tokens, 2048u);
  EXPECT_EQ(ok->models[0].chat_template, "llama3");
  EXPECT_EQ(ok->devices[0].memory_bytes, std::size_t{512} << 20);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"devices": []})", "devices: a non-empty array"},
      {R"({"devices": [{"name": "g0", "backend": "gpu"}], "models": [], "instances": []})",
       "devices[0].backend: 'gpu' is not a backend"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a"}], "instances": []})",
       "models[0]: give exactly one of gguf or synthetic"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "gpt-9"}],
           "instances": [{"device": "g0"}]})",
       "models[0].synthetic: unknown synthetic model shape 'gpt-9'"},
      {R"({"devices": [{"name": "g0"}],
           "models": [{"name": "a", "gguf": "a.gguf", "vocab_size": 100}],
           "instances": [{"device": "g0"}]})",
       "models[0].vocab_size: only a synthetic model takes a vocabulary size"},
      {R"({"devices": [{"name": "g0"}],
           "models": [{"name": "a", "synthetic": "smollm2-135m", "vocab_size": -5}],
           "instances": [{"device": "g0"}]})",
       "models[0].vocab_size: must be a whole number"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g1"}]})",
       "instances[0].device: no device is named 'g1'"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0", "role": "prefil"}]})",
       "instances[0].role: 'prefil' is not a role"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0", "role": "prefill"}]})",
       "prefill instances need a decode instance"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0"}], "policy": {"decode": "lottery"}})",
       "policy.decode: 'lottery' is not a policy"},
      {R"({"devices": [{"name": "g0", "colour": 1}]})", "devices[0].colour: unknown field"},
      {R"({"devices": [{"name": "g0", "memory_mib": "lots"}]})",
       "devices[0].memory_mib: must be a number"},
      {"{not json", "not valid JSON"},
      // Numbers out of range are refused, never wrapped or crashed on.
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m",
           "ttft_s": 1e400}]})",
       "topology: models[0].ttft_s: 1e400 is not a number a double holds"},
      {R"({"slab_mib": 0})", "slab_mib: must be a number from 1 to 4096"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m",
           "max_prompt_tokens": -1}]})",
       "models[0].max_prompt_tokens: must be a whole number"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m",
           "chat_template": "vicuna"}]})",
       "models[0].chat_template: unknown chat template 'vicuna'; known: chatml, llama3, llama2, "
       "mistral"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0", "max_seqs": -1}]})",
       "instances[0].max_seqs: must be a whole number from 1 to 4096; it is -1"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0", "max_seqs": 32.5}]})",
       "instances[0].max_seqs: must be a whole number"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0"}], "policy": {"turn_steps": 0}})",
       "policy.turn_steps: must be a whole number from 1"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "", "synthetic": "smollm2-135m"}]})",
       "models[0].name: must not be empty"},
      {R"({"devices": [{"name": "g0"}],
           "models": [{"name": "a", "synthetic": "smollm2-135m"},
                      {"name": "b", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0", "models": ["a"]}]})",
       "models[1]: no instance serves 'b'"},
      {R"({"devices": [{"name": "g0", "name": "g1"}]})",
       "topology: devices[0]: the key 'name' appears twice; keep one"},
  };
  for (const auto& [text, expected] : bad) {
    auto r = parse_topology(text);
    ASSERT_FALSE(r.has_value()) << text;
    EXPECT_NE(r.error().message.find(expected), std::string::npos)
        << r.error().message << "\n  expected: " << expected;
  }
}

TEST(Topology, JsonErrorsNameThePathOfTheBadField) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"devices": [{"name": "g0"}], "devices": []})",
       "topology: the key 'devices' appears twice; keep one"},
      // Indices count every element before, nested containers and plain values alike.
      {R"({"devices": [{"name": "g0", "memory_mib": [1, {"a": 2}]},
                       {"name": "g1", "memory_mib": 1, "memory_mib": 2}]})",
       "topology: devices[1]: the key 'memory_mib' appears twice; keep one"},
      {R"({"policy": {"routing": "aegaeon", "turn_steps": 4, "routing": "dedicated"}})",
       "topology: policy: the key 'routing' appears twice; keep one"},
      {R"({"devices": [{"name": "g0", "memory_mib": 1e400}]})",
       "topology: devices[0].memory_mib: 1e400 is not a number a double holds"},
      {R"({"devices": [{"name": "g0"}, {"name": "g1", "memory_mib": -2.5e999}]})",
       "topology: devices[1].memory_mib: -2.5e999 is not a number a double holds"},
      {R"({"instances": [{"device": "g0", "models": ["a", [], 1)" + std::string(400, '0') +
           R"(]}]})",
       "topology: instances[0].models[2]: 1" + std::string(400, '0') +
           " is not a number a double holds"},
      {"1e400", "topology: 1e400 is not a number a double holds"},
  };
  for (const auto& [text, expected] : bad) {
    auto r = parse_topology(text);
    ASSERT_FALSE(r.has_value()) << text;
    EXPECT_EQ(r.error().message, expected) << text;
  }
  // The same key in different objects is no duplicate.
  auto ok = parse_topology(R"({"devices": [{"name": "g0"}, {"name": "g1"}],
      "models": [{"name": "a", "synthetic": "smollm2-135m"}],
      "instances": [{"device": "g0"}, {"device": "g1"}]})");
  EXPECT_TRUE(ok.has_value()) << ok.error().to_string();
}

TEST(Attainment, FollowsThePapersDefinition) {
  // The paper's artifact example: tokens at 3, 6, 7, 8 s with TTFT 3 s and TBT 2 s. The second
  // token is late (due at 5), so [3, 6] is off schedule and the deadlines re-anchor at 6.
  const std::vector<double> times = {3, 6, 7, 8};
  EXPECT_EQ(tokens_on_time(times, 3, 2), 3u);
  EXPECT_DOUBLE_EQ(seconds_on_schedule(times, 3, 2), 5);
  request_metrics m;
  m.token_times = times;
  m.tokens_on_time = 3;
  m.seconds_on_schedule = 5;
  EXPECT_DOUBLE_EQ(m.time_attainment(), 5.0 / 8);
  EXPECT_DOUBLE_EQ(m.attainment(), 3.0 / 4);
  // A long wait for the first token costs its length; the tokens after it are on time again.
  EXPECT_EQ(tokens_on_time({9, 10, 11}, 3, 2), 2u);
  EXPECT_DOUBLE_EQ(seconds_on_schedule({9, 10, 11}, 3, 2), 2);
  // Early tokens keep the original schedule: the deadline runs from the deadline, not the token.
  EXPECT_EQ(tokens_on_time({1, 4.9, 7}, 3, 2), 3u);
  EXPECT_EQ(tokens_on_time({1, 2, 7.5}, 3, 2), 2u);
  EXPECT_EQ(tokens_on_time({}, 3, 2), 0u);
  EXPECT_DOUBLE_EQ(request_metrics{}.time_attainment(), 0);
}

TEST(Topology, TheShippedExamplesAreValid) {
  std::size_t seen = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(AEG_SOURCE_DIR) / "apps/examples")) {
    if (entry.path().extension() != ".json")
      continue;
    ++seen;
    auto spec = load_topology(entry.path().string());
    EXPECT_TRUE(spec.has_value()) << entry.path() << ": " << spec.error().to_string();
  }
  EXPECT_GE(seen, 2u);
}

} // namespace
} // namespace aeg::actors
