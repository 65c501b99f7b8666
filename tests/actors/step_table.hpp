#pragma once

// Step tables for the instance's step planner: the state an instance is in at a step boundary,
// built by hand (models, sequences, KV in ledgers that follow the pools' rules), and the
// policy's decisions the tests give it.

#include "actors/step_planner.hpp"
#include "kernels/kv_geometry.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <string>
#include <vector>

namespace aeg::actors::testing {

using namespace std::chrono_literals;
using lines = std::vector<std::string>;

inline constexpr std::size_t KiB = 1024;
inline constexpr std::size_t slab = 64 * KiB;  // 4 blocks of 16 KiB, 8 of 8 KiB
inline constexpr std::size_t block = 16 * KiB; // the default model's KV block
inline constexpr std::size_t small = 8 * KiB;  // another model's KV block

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
    m.name = names_.emplace_back(std::move(name));
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
    auto& pool = (where == kv_place::device ? v.device : v.host).edit();
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

  std::deque<std::string> names_; // the models' names, which the view's names point to
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

inline sched::turn_decision run(std::string model, std::string prefetch = {}) {
  sched::turn_decision d;
  d.run = std::move(model);
  d.prefetch = std::move(prefetch);
  return d;
}

inline sched::turn_decision next_turn(std::string model) {
  auto d = run(std::move(model));
  d.new_turn = true;
  d.next_batch = true;
  return d;
}

} // namespace aeg::actors::testing
