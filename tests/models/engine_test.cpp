// The engine switching models and moving KV on the CPU backend, with real stream threads: every
// switch, swap and step sequence must leave the tokens exactly as a run that never switched,
// move KV bit for bit, and give back every block and every byte of the arena.

#include "coro/sync_wait.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/registry.hpp"
#include "models/engine.hpp"
#include "models/gguf/file.hpp"
#include "tests/support/tiny_llama.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

namespace aeg::models {
namespace {

void wait(gpu::event& ev) {
  coro::sync_wait([](gpu::event* e) -> coro::task<void> { co_await *e; }(&ev));
}

// Three tiny llamas of different shapes (so their KV blocks differ in size).
std::vector<aeg::testing::tiny_llama_spec> three_shapes() {
  aeg::testing::tiny_llama_spec a, b, c;
  b.layers = 3;
  b.dim = 96;
  b.heads = 3;
  b.kv_heads = 1;
  b.ffn = 192;
  b.seed = 2;
  c.dim = 128;
  c.heads = 4;
  c.kv_heads = 4;
  c.ffn = 256;
  c.seed = 3;
  return {a, b, c};
}

class Engine : public ::testing::Test {
protected:
  Engine() {
    dev_ = *gpu::make_device({.backend = "cpu", .ordinal = 0, .capacity_bytes = 256 << 20});
    auto host = dev_->allocate_pinned(16 << 20);
    host_kv_ = std::make_shared<gpu::kv_pool>(std::move(*host), 1 << 20);
    for (const auto& spec : three_shapes()) {
      files_.push_back(aeg::testing::make_tiny_llama(spec));
      auto f = gguf::file::parse(files_.back());
      images_.push_back(
          *load_llama(*f, compute_format::for_backend(gpu::backend_kind::cpu), *dev_));
      configs_.push_back(images_.back()->config());
    }
  }

  std::unique_ptr<engine> make_engine(std::size_t kv_bytes = 8 << 20) {
    engine_options o;
    o.weight_bytes = 0;
    for (const auto& img : images_) // room for the two largest side by side
      o.weight_bytes = std::max(o.weight_bytes, img->bytes().size());
    o.weight_bytes = 2 * o.weight_bytes + 4096;
    o.kv_bytes = kv_bytes;
    o.slab_bytes = 1 << 20;
    o.limits = {128, 8, 0};
    auto e = engine::create(dev_, host_kv_, largest_shape(configs_), o);
    EXPECT_TRUE(e.has_value()) << (e ? "" : e.error().to_string());
    return std::move(*e);
  }

  static void switch_to(engine& e, const std::shared_ptr<const model_image>& image) {
    if (e.active() == image.get())
      return;
    if (e.staged() != image.get())
      ASSERT_TRUE(e.stage(image));
    e.activate();
  }

  std::vector<std::int32_t> prompt(std::size_t model, std::size_t i) const {
    std::vector<std::int32_t> p(5 + 7 * i);
    for (std::size_t k = 0; k < p.size(); ++k)
      p[k] = static_cast<std::int32_t>((k * 131 + i * 17 + model) % configs_[model].vocab_size);
    return p;
  }

  // A sequence being generated: its tokens, its KV and the model it belongs to.
  struct seq {
    std::size_t model;
    std::vector<std::int32_t> tokens;
    std::size_t prompt_len;
    kv_handle kv;
  };

  // One step for `seqs` (all of the active model); returns false when KV ran out.
  static void step(engine& e, std::vector<seq*> seqs) {
    std::vector<sequence_step> steps;
    std::vector<kv_handle*> kvs;
    for (seq* s : seqs) {
      const std::size_t start = s->kv.tokens;
      const auto geometry = e.active()->config().kv(e.active()->format().kv_type());
      ASSERT_TRUE(e.reserve(s->kv, geometry, s->tokens.size()));
      steps.push_back({std::span(s->tokens).subspan(start), start, s->kv.blocks, true, {}});
      kvs.push_back(&s->kv);
    }
    ASSERT_TRUE(e.enqueue_step(steps, kvs));
    wait(e.step_done());
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      seqs[i]->kv.tokens = seqs[i]->tokens.size();
      seqs[i]->tokens.push_back(e.sampled()[i]);
    }
  }

  // Greedy tokens of each prompt on a fresh engine that never switches: the reference.
  std::map<std::pair<std::size_t, std::size_t>, std::vector<std::int32_t>>
  reference(std::size_t per_model, std::size_t new_tokens) {
    std::map<std::pair<std::size_t, std::size_t>, std::vector<std::int32_t>> out;
    for (std::size_t m = 0; m < images_.size(); ++m) {
      auto e = make_engine();
      switch_to(*e, images_[m]);
      for (std::size_t i = 0; i < per_model; ++i) {
        seq s{m, prompt(m, i), prompt(m, i).size(), {}};
        while (s.tokens.size() < s.prompt_len + new_tokens)
          step(*e, {&s});
        out[{m, i}] = s.tokens;
        e->release(s.kv);
      }
    }
    return out;
  }

  // Releases the sequences' KV once their last transfers are done, then checks nothing is held.
  static void release_all(engine& e, std::vector<seq>& seqs) {
    for (auto& s : seqs) {
      if (s.kv.ready)
        wait(*s.kv.ready);
      e.release(s.kv);
    }
  }

  static void expect_all_free(engine& e, const gpu::kv_pool& host) {
    wait(e.step_done());
    const_cast<gpu::kv_pool&>(e.device_kv()).reclaim();
    const_cast<gpu::kv_pool&>(host).reclaim();
    EXPECT_EQ(e.device_kv().allocated_bytes(), 0u);
    EXPECT_EQ(e.device_kv().num_moving(), 0u);
    EXPECT_EQ(e.device_kv().num_free_slabs(), e.device_kv().num_slabs());
    EXPECT_EQ(host.allocated_bytes(), 0u);
    EXPECT_EQ(host.num_free_slabs(), host.num_slabs());
    e.deactivate();
    e.unstage();
    EXPECT_EQ(e.arena().free_bytes(), e.arena().capacity());
  }

  // An engine with `weight_bytes` of weight memory and a little KV, the first model active.
  std::unique_ptr<engine> with_first_active(std::size_t weight_bytes) {
    engine_options o;
    o.weight_bytes = weight_bytes;
    o.kv_bytes = 2 << 20;
    o.slab_bytes = 1 << 20;
    auto e = *engine::create(dev_, host_kv_, largest_shape(configs_), o);
    EXPECT_TRUE(e->stage(images_[0]));
    e->activate();
    return e;
  }

  std::shared_ptr<gpu::device> dev_;
  std::shared_ptr<gpu::kv_pool> host_kv_;
  std::vector<std::vector<std::byte>> files_;
  std::vector<std::shared_ptr<const model_image>> images_;
  std::vector<llama_config> configs_;
};

// Three models take turns of one decode step each, hundreds of times, their sequences swapped out
// to the host when their model leaves and swapped back in when it returns.
TEST_F(Engine, ModelsSwitchedEveryStepProduceTheTokensOfRunsThatNeverSwitch) {
  const std::size_t per_model = 3, new_tokens = 40;
  const auto expected = reference(per_model, new_tokens);
  auto e = make_engine();
  std::vector<seq> seqs;
  for (std::size_t m = 0; m < images_.size(); ++m)
    for (std::size_t i = 0; i < per_model; ++i)
      seqs.push_back({m, prompt(m, i), prompt(m, i).size(), {}});
  std::size_t switches = 0;
  for (std::size_t turn = 0; turn < new_tokens; ++turn)
    for (std::size_t m = 0; m < images_.size(); ++m) {
      switch_to(*e, images_[m]);
      ++switches;
      // Prefetch the next model while this one runs.
      ASSERT_TRUE(e->stage(images_[(m + 1) % images_.size()]));
      std::vector<seq*> mine;
      for (auto& s : seqs)
        if (s.model == m) {
          if (s.kv.where == kv_handle::place::host)
            ASSERT_TRUE(e->swap_in(s.kv));
          mine.push_back(&s);
        }
      step(*e, mine);
      for (seq* s : mine)
        ASSERT_TRUE(e->swap_out(s->kv));
    }
  EXPECT_GE(switches, 120u);
  for (auto& s : seqs) {
    const auto it = std::find_if(expected.begin(), expected.end(), [&](const auto& kv) {
      return kv.first.first == s.model &&
             std::equal(kv.second.begin(), kv.second.begin() + s.prompt_len, s.tokens.begin());
    });
    ASSERT_NE(it, expected.end());
    EXPECT_EQ(s.tokens, it->second) << "model " << s.model;
  }
  release_all(*e, seqs);
  EXPECT_GT(e->stats().swaps_out, 300u);
  expect_all_free(*e, *host_kv_);
}

TEST_F(Engine, KvSurvivesSwapOutAndInBitForBit) {
  auto e = make_engine();
  switch_to(*e, images_[1]);
  seq s{1, prompt(1, 3), prompt(1, 3).size(), {}};
  step(*e, {&s}); // prefill: the blocks now hold real K and V
  const std::size_t bb = s.kv.block_bytes();
  auto bytes_of = [&](const gpu::kv_pool& pool) {
    std::vector<std::byte> out;
    for (auto id : s.kv.blocks) {
      const auto* p = pool.block(bb, id);
      out.insert(out.end(), p, p + bb);
    }
    return out;
  };
  const auto before = bytes_of(e->device_kv());
  ASSERT_TRUE(e->swap_out(s.kv));
  wait(*s.kv.ready);
  EXPECT_EQ(bytes_of(*host_kv_), before);
  ASSERT_TRUE(e->swap_in(s.kv));
  wait(*s.kv.ready);
  EXPECT_EQ(bytes_of(e->device_kv()), before);
  std::vector<seq> all{std::move(s)};
  release_all(*e, all);
  expect_all_free(*e, *host_kv_);
}

// A KV cache whose last copy the device failed (a hand-off from a faulted device) is refused
// with device_error wherever it would be read, not copied or computed on as if it had arrived.
TEST_F(Engine, KvWhoseCopyFailedIsRefusedNotRead) {
  auto e = make_engine();
  switch_to(*e, images_[1]);
  seq s{1, prompt(1, 3), prompt(1, 3).size(), {}};
  step(*e, {&s});
  ASSERT_TRUE(e->swap_out(s.kv));
  wait(*s.kv.ready);
  auto failed = [&] {
    std::shared_ptr<gpu::event> ev(std::move(*dev_->create_event()));
    ev->failer(ev->begin_record())("the GPU failed");
    return ev;
  };
  s.kv.ready = failed();
  auto in = e->swap_in(s.kv);
  ASSERT_FALSE(in);
  EXPECT_EQ(in.error().code, errc::device_error);
  EXPECT_NE(in.error().message.find("the GPU failed"), std::string::npos) << in.error().message;

  s.kv.ready = nullptr;
  ASSERT_TRUE(e->swap_in(s.kv));
  wait(*s.kv.ready);
  s.kv.ready = failed();
  const sequence_step st{
      std::span(s.tokens).subspan(s.kv.tokens), s.kv.tokens, s.kv.blocks, true, {}};
  kv_handle* kvs[] = {&s.kv};
  auto stepped = e->enqueue_step(std::span(&st, 1), kvs);
  ASSERT_FALSE(stepped);
  EXPECT_EQ(stepped.error().code, errc::device_error);
  auto out = e->swap_out(s.kv);
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, errc::device_error);
  e->release(s.kv); // a failed copy writes nothing more: its blocks come back
  expect_all_free(*e, *host_kv_);
}

// Random interleavings of steps, swaps, switches, prefetches and releases, from a seed: whatever
// the order, the tokens equal the unswitched run's and nothing leaks.
TEST_F(Engine, RandomInterleavingsOfSwapsAndStepsKeepTheInvariants) {
  const std::size_t per_model = 2, new_tokens = 12;
  const auto expected = reference(per_model, new_tokens);
  for (std::uint32_t seed : {1u, 2u, 3u, 4u}) {
    std::mt19937 rng(seed);
    auto e = make_engine(4 << 20);
    std::vector<seq> seqs;
    for (std::size_t m = 0; m < images_.size(); ++m)
      for (std::size_t i = 0; i < per_model; ++i)
        seqs.push_back({m, prompt(m, i), prompt(m, i).size(), {}});
    auto unfinished = [&] {
      return std::any_of(seqs.begin(), seqs.end(),
                         [&](const seq& s) { return s.tokens.size() < s.prompt_len + new_tokens; });
    };
    std::size_t ops = 0;
    while (unfinished()) {
      ASSERT_LT(++ops, 10000u) << "seed " << seed;
      const std::size_t m = rng() % images_.size();
      switch (rng() % 5) {
      case 0: // switch to m, possibly through a prefetch
        switch_to(*e, images_[m]);
        break;
      case 1: // prefetch m
        if (e->active() != images_[m].get())
          ASSERT_TRUE(e->stage(images_[m]));
        break;
      case 2: { // swap a random sequence out or in
        seq& s = seqs[rng() % seqs.size()];
        if (s.kv.where == kv_handle::place::device)
          ASSERT_TRUE(e->swap_out(s.kv));
        else if (s.kv.where == kv_handle::place::host)
          ASSERT_TRUE(e->swap_in(s.kv));
        break;
      }
      default: { // a step of some of the active model's unfinished sequences
        if (!e->active())
          break;
        const auto* active = e->active();
        std::vector<seq*> batch;
        for (auto& s : seqs)
          if (images_[s.model].get() == active && s.tokens.size() < s.prompt_len + new_tokens &&
              rng() % 3 != 0) {
            if (s.kv.where == kv_handle::place::host)
              ASSERT_TRUE(e->swap_in(s.kv));
            batch.push_back(&s);
          }
        if (!batch.empty())
          step(*e, batch);
        break;
      }
      }
    }
    for (auto& s : seqs) {
      const std::size_t i = static_cast<std::size_t>(
          std::find_if(expected.begin(), expected.end(), [&](const auto& kv) {
            return kv.first.first == s.model &&
                   std::equal(kv.second.begin(), kv.second.begin() + s.prompt_len,
                              s.tokens.begin());
          })->first.second);
      EXPECT_EQ(s.tokens, expected.at({s.model, i})) << "seed " << seed;
    }
    release_all(*e, seqs);
    expect_all_free(*e, *host_kv_);
  }
}

// Two models kept resident (the leaving one stays staged: MuxServe's device) alternate every
// step with their KV on the device: each is copied in once (the second as the first one's
// prefetch), every later switch finds it there, and the tokens are those of runs that never
// switched.
TEST_F(Engine, TwoResidentModelsAlternatingEveryStepAreCopiedOnceAndComputeAsAlone) {
  const std::size_t per_model = 2, new_tokens = 24;
  const auto expected = reference(per_model, new_tokens);
  auto e = make_engine();
  std::vector<seq> seqs;
  for (std::size_t m = 0; m < 2; ++m)
    for (std::size_t i = 0; i < per_model; ++i)
      seqs.push_back({m, prompt(m, i), prompt(m, i).size(), {}});
  std::size_t prefetched = 0;
  for (std::size_t turn = 0; turn < new_tokens; ++turn)
    for (std::size_t m = 0; m < 2; ++m) {
      auto hit = e->scale_up(images_[m], true);
      ASSERT_TRUE(hit);
      prefetched += *hit;
      ASSERT_TRUE(e->stage(images_[1 - m])); // copied the first time, then already there
      std::vector<seq*> mine;
      for (auto& s : seqs)
        if (s.model == m)
          mine.push_back(&s);
      step(*e, mine);
    }
  EXPECT_EQ(prefetched, 2 * new_tokens - 1); // all but the very first scale-up
  EXPECT_EQ(e->stats().weight_bytes_copied,
            images_[0]->bytes().size() + images_[1]->bytes().size());
  EXPECT_EQ(e->stats().swaps_out, 0u);
  for (auto& s : seqs)
    EXPECT_EQ(s.tokens, expected.at({s.model, static_cast<std::size_t>(&s - &seqs[0]) % per_model}))
        << "model " << s.model;
  release_all(*e, seqs);
  expect_all_free(*e, *host_kv_);
}

TEST_F(Engine, AModelThatDoesNotFitBesideTheActiveOneIsRefusedUntilScaledDown) {
  auto e = with_first_active(images_[2]->bytes().size() + 4096); // one model at a time
  auto r = e->stage(images_[2]);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::out_of_memory);
  e->deactivate();
  EXPECT_TRUE(e->stage(images_[2]));
}

// A prefetch with no room beside the active model is a plain "no" (and drops what was staged,
// as a stage would); with room it stages, and asking again for the staged model keeps it.
TEST_F(Engine, APrefetchWithoutRoomSaysNoAndDropsWhatWasStaged) {
  auto e = with_first_active(images_[0]->bytes().size() + images_[1]->bytes().size() + 8192);
  auto staged = e->prefetch(images_[1]);
  ASSERT_TRUE(staged);
  EXPECT_TRUE(*staged);
  EXPECT_EQ(e->staged(), images_[1].get());
  ASSERT_TRUE(e->prefetch(images_[1]));
  EXPECT_EQ(e->staged(), images_[1].get()) << "the staged model stays";
  ASSERT_GT(images_[2]->bytes().size(), images_[1]->bytes().size() + 8192)
      << "the largest model must not fit beside the first";
  auto none = e->prefetch(images_[2]);
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_FALSE(*none);
  EXPECT_EQ(e->staged(), nullptr);
  e->deactivate();
  auto alone = e->prefetch(images_[2]);
  ASSERT_TRUE(alone) << alone.error().message;
  EXPECT_TRUE(*alone);
  EXPECT_EQ(e->staged(), images_[2].get());
}

// The plan is what `create` takes, so a budget check made from it before loading anything is
// neither too strict nor too lax: on a device of exactly the planned size the engine starts
// with the KV slabs asked for, and 1 KiB less leaves it a slab short.
TEST_F(Engine, TheDevicePlanIsExactlyWhatCreateTakes) {
  engine_options o;
  o.weight_bytes = images_[2]->bytes().size() + 4096;
  o.slab_bytes = 1 << 20;
  o.limits = {96, 6, 0};
  const auto shape = largest_shape(configs_);
  const auto block = configs_[2].kv(images_[2]->format().kv_type()).block_bytes();
  for (std::size_t slabs : {1, 3}) {
    const auto plan = engine::device_bytes(shape, o, slabs);
    ASSERT_EQ(plan.total(), plan.weights + plan.buffers + plan.kv);
    auto exact =
        *gpu::make_device({.backend = "cpu", .ordinal = 0, .capacity_bytes = plan.total()});
    auto e = engine::create(exact, host_kv_, shape, o);
    ASSERT_TRUE(e) << e.error().to_string();
    EXPECT_EQ((*e)->device_kv().num_slabs(), slabs);
    EXPECT_GE((*e)->kv_capacity(configs_[2].kv(images_[2]->format().kv_type())),
              slabs * ((1 << 20) / block));
    EXPECT_LE(exact->used_bytes(), plan.total());

    auto tight =
        *gpu::make_device({.backend = "cpu", .ordinal = 0, .capacity_bytes = plan.total() - 1024});
    auto t = engine::create(tight, host_kv_, shape, o);
    if (slabs == 1) {
      ASSERT_FALSE(t);
      EXPECT_EQ(t.error().code, errc::out_of_memory);
    } else {
      ASSERT_TRUE(t) << t.error().to_string();
      EXPECT_EQ((*t)->device_kv().num_slabs(), slabs - 1);
    }
  }
  // A sized KV pool is planned as given.
  o.kv_bytes = 5 << 20;
  EXPECT_EQ(engine::device_bytes(shape, o, 1).kv, std::size_t{5} << 20);
}

} // namespace
} // namespace aeg::models
