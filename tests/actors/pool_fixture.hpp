#pragma once

// A test fixture for pools of CPU devices with tiny models on CAF's real scheduler: specs, the
// requests' solo tokens, collecting every token and end, and checks that nothing stays held.

#include "actors/cluster.hpp"
#include "actors/generation.hpp"
#include "actors/instance_state.hpp"
#include "actors/pool.hpp"
#include "actors/runtime_config.hpp"
#include "tests/support/tiny_llama.hpp"

#include <caf/all.hpp>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace aeg::actors {

struct outcome {
  std::vector<std::int32_t> tokens;
  generation_result result;
  bool done = false;
  std::size_t batches = 0; ///< `tokens` messages among them
};

class Pool : public ::testing::Test {
protected:
  // `network`: CAF's network layer is loaded, for pools that reach workers; over TLS with the
  // files `tls` makes in the fixture's directory, when given.
  using tls_maker = std::function<cluster_tls(const std::filesystem::path&)>;
  explicit Pool(bool network = false, const tls_maker& tls = {}) {
    instance_state::check_views(true); // every step's kept view is checked against the state
    dir_ = std::filesystem::temp_directory_path() /
           ("aeg-pool-" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir_);
    configure_runtime(cfg_); // as our processes run CAF
    if (network)
      enable_network(cfg_, tls ? tls(dir_) : cluster_tls{});
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    self_ = std::make_unique<caf::scoped_actor>(*sys_);
  }
  ~Pool() override {
    pools_.clear();
    self_.reset();
    std::filesystem::remove_all(dir_);
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
      m.source.model_path = path;
      out.push_back(m);
    }
    return out;
  }

  // A model with many layers of one small KV head pair: 288 KiB KV blocks in f16, more than a
  // quarter of a 1 MiB slab.
  std::vector<model_spec> deep_model() {
    aeg::testing::tiny_llama_spec t;
    t.layers = 72;
    t.dim = 64;
    t.heads = 2;
    t.kv_heads = 2;
    t.ffn = 64;
    return one_model(t, "deep");
  }

  // One model of shape `t`, written as a GGUF file and named `name`.
  std::vector<model_spec> one_model(const aeg::testing::tiny_llama_spec& t,
                                    const std::string& name) {
    const auto path = (dir_ / (name + ".gguf")).string();
    EXPECT_TRUE(aeg::testing::write_tiny_llama(t, path));
    std::vector<model_spec> models(1);
    models[0].name = name;
    models[0].source.model_path = path;
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
          [&](token_atom, std::uint64_t id, std::int32_t token,
              const aeg::models::token_logprobs&) {
            out[id].tokens.push_back(token);
            if (on_token)
              on_token(id, out[id].tokens.size());
          },
          [&](tokens_atom, std::uint64_t id, const token_batch& b) {
            EXPECT_FALSE(out[id].done) << "request " << id << ": tokens after its end";
            EXPECT_EQ(b.ages_ns.size(), b.tokens.size()) << "request " << id;
            out[id].tokens.insert(out[id].tokens.end(), b.tokens.begin(), b.tokens.end());
            ++out[id].batches;
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
  // Every request ran to its length with its solo tokens.
  void expect_solo(const std::map<std::uint64_t, outcome>& got,
                   const std::vector<generation_request>& reqs,
                   const std::map<std::uint64_t, std::vector<std::int32_t>>& expected) {
    expect_solo_unless_cancelled(got, reqs, expected, [](std::uint64_t) { return false; });
  }

  // What the proxy of `p` reports.
  pool_metrics metrics_of(pool& p) {
    pool_metrics m;
    (*self_)
        ->request(p.proxy(), caf::infinite, metrics_atom::value)
        .receive([&](const pool_metrics& pm) { m = pm; },
                 [&](caf::error& e) { ADD_FAILURE() << sys_->render(e); });
    return m;
  }

  // Finished requests that were placed again after their instance died.
  std::size_t rerouted(pool& p) {
    std::size_t n = 0;
    for (const auto& f : metrics_of(p).finished)
      n += f.rerouted ? 1 : 0;
    return n;
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
    const auto m = metrics_of(p);
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
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<pool>> pools_;
};

} // namespace aeg::actors
