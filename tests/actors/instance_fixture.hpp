#pragma once

// The instance tests' fixture: an actor system with a CPU device, tiny models, requests and their
// outcomes; and CPU devices whose kernels pass through a hook (a fault injected, a gate).

#include "actors/generation.hpp"
#include "actors/instance.hpp"
#include "actors/instance_state.hpp"
#include "actors/runtime_config.hpp"
#include "gpu/registry.hpp"
#include "models/gguf/file.hpp"
#include "models/tokenizer/tokenizer.hpp"
#include "tests/support/tiny_llama.hpp"

#include <caf/all.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <random>

namespace aeg::actors {

struct outcome {
  std::vector<std::int32_t> tokens;
  std::vector<float> logprobs; ///< of each token, when asked
  generation_result result;
  std::vector<std::size_t> batch_sizes; ///< of the `tokens` messages among them, in order
  std::vector<std::int64_t> batch_ages; ///< each batched token's age when sent, in order
  bool ended = false;
};

class Instance : public ::testing::Test {
protected:
  Instance() {
    instance_state::check_views(true); // every step's kept view is checked against the state
    configure_runtime(cfg_);           // as our processes run CAF
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    self_ = std::make_unique<caf::scoped_actor>(*sys_);
    dev_ = *gpu::make_device({.backend = "cpu", .ordinal = 0, .capacity_bytes = 256 << 20});
  }
  ~Instance() override {
    for (auto& a : spawned_)
      (*self_)->send_exit(a, caf::exit_reason::user_shutdown);
    self_.reset();
  }

  // A tiny random llama for the CPU.
  std::shared_ptr<const models::model_image> tiny_model(std::uint32_t seed = 1) {
    aeg::testing::tiny_llama_spec spec;
    spec.seed = seed;
    bytes_ = aeg::testing::make_tiny_llama(spec);
    auto f = models::gguf::file::parse(bytes_);
    EXPECT_TRUE(f.has_value());
    auto img =
        models::load_llama(*f, models::compute_format::for_backend(gpu::backend_kind::cpu), *dev_);
    EXPECT_TRUE(img.has_value()) << (img ? "" : img.error().to_string());
    return *img;
  }

  // Three tiny llamas of different shapes (their KV blocks differ in size).
  std::vector<served_model> three_models() {
    std::vector<served_model> out;
    for (int i = 0; i < 3; ++i) {
      aeg::testing::tiny_llama_spec spec;
      spec.seed = 10 + static_cast<std::uint32_t>(i);
      spec.layers = 2 + static_cast<std::size_t>(i);
      spec.dim = 64 + 32 * static_cast<std::size_t>(i);
      spec.heads = 2 + static_cast<std::size_t>(i);
      spec.kv_heads = 1;
      spec.ffn = 2 * spec.dim;
      many_bytes_.push_back(aeg::testing::make_tiny_llama(spec));
      auto f = models::gguf::file::parse(many_bytes_.back());
      auto img = models::load_llama(*f, models::compute_format::for_backend(gpu::backend_kind::cpu),
                                    *dev_);
      out.push_back({"m" + std::to_string(i), *img});
    }
    return out;
  }

  instance_actor spawn_many(std::vector<served_model> models, instance_options o = {}) {
    auto a = spawn_instance(*sys_, dev_, std::move(models), std::move(o));
    spawned_.push_back(a);
    return a;
  }

  instance_actor spawn(std::shared_ptr<const models::model_image> image, instance_options o = {}) {
    auto a = spawn_instance(*sys_, dev_, std::move(image), o);
    spawned_.push_back(a);
    return a;
  }

  generation_request request(std::uint64_t id, std::vector<std::int32_t> prompt,
                             std::size_t max_tokens, models::sampling_params s = {}) {
    generation_request r;
    r.id = id;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.sampling = s;
    r.sink = caf::actor_cast<generation_sink>(*self_);
    return r;
  }

  // Collects tokens and ends until `n` requests have ended.
  std::map<std::uint64_t, outcome> collect(std::size_t n) {
    std::map<std::uint64_t, outcome> out;
    std::size_t ended = 0;
    while (ended < n)
      (*self_)->receive(
          [&](token_atom, std::uint64_t id, std::int32_t token,
              const aeg::models::token_logprobs& lp) {
            out[id].tokens.push_back(token);
            if (lp.asked)
              out[id].logprobs.push_back(lp.logprob);
          },
          [&](tokens_atom, std::uint64_t id, const token_batch& b) {
            EXPECT_FALSE(out[id].ended) << "request " << id << ": tokens after its end";
            out[id].tokens.insert(out[id].tokens.end(), b.tokens.begin(), b.tokens.end());
            out[id].batch_sizes.push_back(b.tokens.size());
            out[id].batch_ages.insert(out[id].batch_ages.end(), b.ages_ns.begin(), b.ages_ns.end());
          },
          [&](done_atom, const generation_result& r) {
            out[r.id].ended = true;
            out[r.id].result = r;
            ++ended;
          });
    return out;
  }

  instance_stats stats(const instance_actor& inst) {
    instance_stats s;
    (*self_)
        ->request(inst, caf::infinite, stats_atom::value)
        .receive([&](const instance_stats& st) { s = st; },
                 [&](caf::error& e) { ADD_FAILURE() << sys_->render(e); });
    return s;
  }

  // Sends `reqs` to `inst` at once; each must end by length with the tokens it made `alone`, and
  // afterwards the instance holds no KV and no request. Returns its stats.
  instance_stats expect_solo_tokens(const instance_actor& inst,
                                    const std::vector<generation_request>& reqs,
                                    const std::map<std::uint64_t, outcome>& alone) {
    for (const auto& r : reqs)
      (*self_)->send(inst, generate_atom::value, r);
    const auto together = collect(reqs.size());
    for (const auto& r : reqs) {
      EXPECT_EQ(together.at(r.id).result.reason, finish_reason::length)
          << together.at(r.id).result.message;
      EXPECT_EQ(together.at(r.id).tokens, alone.at(r.id).tokens) << "request " << r.id;
      EXPECT_EQ(together.at(r.id).logprobs, alone.at(r.id).logprobs) << "request " << r.id;
    }
    const auto s = stats(inst);
    EXPECT_EQ(s.kv_bytes_used, 0u);
    EXPECT_EQ(s.host_kv_bytes_used, 0u);
    EXPECT_EQ(s.running + s.waiting, 0u);
    return s;
  }

  // `per_model` requests for each model: prompts of first + step·i tokens, seeds i + spread·m.
  std::vector<generation_request> per_model_requests(const std::vector<served_model>& models,
                                                     std::uint32_t per_model, std::size_t first,
                                                     std::size_t step, std::uint32_t spread,
                                                     std::size_t max_tokens) {
    std::vector<generation_request> reqs;
    std::uint64_t id = 0;
    for (std::size_t m = 0; m < models.size(); ++m)
      for (std::uint32_t i = 0; i < per_model; ++i) {
        auto r = request(id++,
                         prompt(first + step * i, models[m].image->config().vocab_size,
                                i + spread * static_cast<std::uint32_t>(m)),
                         max_tokens);
        r.model = models[m].name;
        reqs.push_back(std::move(r));
      }
    return reqs;
  }

  // Each request's outcome alone on an instance of its own model.
  std::map<std::uint64_t, outcome>
  alone_on_own_instances(const std::vector<served_model>& models,
                         const std::vector<generation_request>& reqs) {
    std::map<std::uint64_t, outcome> alone;
    for (const auto& model : models) {
      auto solo = spawn_many({model}, {.kv_bytes = 8 << 20, .slab_bytes = 1 << 20, .policy = {}});
      for (const auto& r : reqs)
        if (r.model == model.name) {
          (*self_)->send(solo, generate_atom::value, r);
          alone.merge(collect(1));
        }
    }
    return alone;
  }

  // One instance for all `models` that switches at every step (turns of one step), swapping the
  // leaving model's KV out to the host and prefetching the next model.
  instance_actor switching_every_step(const std::vector<served_model>& models) {
    return spawn_many(models, {.kv_bytes = 8 << 20,
                               .slab_bytes = 1 << 20,
                               .swap_out_on_switch = true,
                               .policy = [] { return sched::make_round_robin(1); }});
  }

  static std::vector<std::int32_t> prompt(std::size_t n, std::size_t vocab, std::uint32_t seed) {
    std::vector<std::int32_t> p(n);
    for (std::size_t i = 0; i < n; ++i)
      p[i] = static_cast<std::int32_t>((i * 2654435761u + seed * 97u) % vocab);
    return p;
  }

  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<caf::scoped_actor> self_;
  std::shared_ptr<gpu::device> dev_;
  std::vector<std::byte> bytes_;
  std::vector<std::vector<std::byte>> many_bytes_;
  std::vector<instance_actor> spawned_;
};

// A CPU device whose streams run the real work, each kernel first through `hook` (on the
// stream's thread): the real device underneath, with a fault injected or a gate to wait at.
class hooked_device final : public gpu::device {
public:
  hooked_device(std::shared_ptr<gpu::device> inner, std::function<void()> hook)
      : inner_(std::move(inner)), hook_(std::make_shared<std::function<void()>>(std::move(hook))) {}
  std::string name() const override { return inner_->name(); }
  gpu::backend_kind kind() const noexcept override { return inner_->kind(); }
  std::size_t capacity_bytes() const noexcept override { return inner_->capacity_bytes(); }
  std::size_t used_bytes() const noexcept override { return inner_->used_bytes(); }
  result<gpu::buffer> allocate(std::size_t bytes) override { return inner_->allocate(bytes); }
  result<gpu::buffer> allocate_pinned(std::size_t bytes) override {
    return inner_->allocate_pinned(bytes);
  }
  result<std::shared_ptr<void>> pin(void* p, std::size_t bytes) override {
    return inner_->pin(p, bytes);
  }
  result<std::unique_ptr<gpu::event>> create_event() override { return inner_->create_event(); }
  result<std::unique_ptr<gpu::stream>> create_stream() override {
    auto s = inner_->create_stream();
    if (!s)
      return s;
    return std::unique_ptr<gpu::stream>(std::make_unique<stream>(std::move(*s), hook_));
  }

protected:
  void release(void*, std::size_t, gpu::buffer::space) noexcept override {} // inner's buffers

private:
  class stream final : public gpu::stream {
  public:
    stream(std::unique_ptr<gpu::stream> s, std::shared_ptr<std::function<void()>> hook)
        : s_(std::move(s)), hook_(std::move(hook)) {}
    result<void> copy(void* d, const void* src, std::size_t n, gpu::copy_kind k) override {
      return s_->copy(d, src, n, k);
    }
    result<void> record(gpu::event& ev) override { return s_->record(ev); }
    result<void> wait(gpu::event& ev) override { return s_->wait(ev); }
    result<void> host_callback(std::function<void()> fn) override {
      return s_->host_callback([fn = std::move(fn), hook = hook_] {
        (*hook)();
        fn();
      });
    }
    gpu::backend_kind kind() const noexcept override { return s_->kind(); }
    void* native_handle() const noexcept override { return s_->native_handle(); }

  private:
    std::unique_ptr<gpu::stream> s_;
    std::shared_ptr<std::function<void()>> hook_;
  };

  std::shared_ptr<gpu::device> inner_;
  std::shared_ptr<std::function<void()>> hook_;
};

// Kernels that run until the `fail_at`-th, which throws as a faulting GPU kernel would.
struct fault_at {
  explicit fault_at(int fail_at) : left(std::make_shared<std::atomic<int>>(fail_at)), at(fail_at) {}
  std::function<void()> hook() const {
    return [left = left] {
      if (left->fetch_sub(1) == 1)
        throw std::runtime_error("injected fault: illegal address");
    };
  }
  int kernels() const { return at - left->load(); } // run so far
  std::shared_ptr<std::atomic<int>> left;
  int at;
};

// Kernels that wait until the test opens the gate.
struct gate {
  std::function<void()> hook() const {
    return [s = state] {
      std::unique_lock lock(s->m);
      s->cv.wait(lock, [&] { return s->open; });
    };
  }
  void open() const {
    {
      std::lock_guard lock(state->m);
      state->open = true;
    }
    state->cv.notify_all();
  }
  struct shared {
    std::mutex m;
    std::condition_variable cv;
    bool open = false;
  };
  std::shared_ptr<shared> state = std::make_shared<shared>();
};

} // namespace aeg::actors
