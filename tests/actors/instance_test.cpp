// The instance actor on CAF's real scheduler with a CPU device: continuous batching must not
// change any request's tokens, and every KV block must come back however requests end.

#include "actors/generation.hpp"
#include "actors/instance.hpp"
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
namespace {

struct outcome {
  std::vector<std::int32_t> tokens;
  std::vector<float> logprobs; ///< of each token, when asked
  generation_result result;
};

class Instance : public ::testing::Test {
protected:
  Instance() {
    cfg_.set("logger.verbosity", caf::atom("quiet"));
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
          [&](done_atom, const generation_result& r) {
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

// 16 requests of different lengths, greedy and sampled, sent at once to an instance whose steps
// hold 40 tokens: they join and leave the batch at step boundaries, long prompts are prefilled in
// chunks, and each must produce exactly the tokens it produces alone.
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
  // The steps the long prompt took, counted by the instance itself from the moment it took the
  // prompt (the stats request queues behind it), so that however late this thread reacts, only
  // the steps beside the prompt count.
  auto steps_while_prefilling = [&](double tbt) {
    auto inst = spawn_many(
        {{"m", image, tbt, tbt}},
        {.max_batch_tokens = 128, .max_seqs = 4, .kv_bytes = 4 << 20, .slab_bytes = 1 << 20});
    (*self_)->send(inst, generate_atom::value, request(1, prompt(8, vocab, 1), 300));
    std::size_t steps_at_arrival = 0;
    bool started = false, long_done = false;
    while (!long_done)
      (*self_)->receive(
          [&](token_atom, std::uint64_t id, std::int32_t, const aeg::models::token_logprobs&) {
            if (id == 1 && !started) {
              started = true; // decoding: now the long prompt arrives
              (*self_)->send(inst, generate_atom::value, request(2, prompt(400, vocab, 2), 1));
              steps_at_arrival = stats(inst).steps;
            }
          },
          [&](done_atom, const generation_result& r) {
            EXPECT_EQ(r.id, 2u) << r.message;
            EXPECT_EQ(r.reason, finish_reason::length) << r.message;
            long_done = true;
          });
    const std::size_t steps = stats(inst).steps - steps_at_arrival;
    (*self_)->send(inst, cancel_atom::value, std::uint64_t{1});
    collect(1);
    EXPECT_EQ(stats(inst).kv_bytes_used, 0u);
    return steps;
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
