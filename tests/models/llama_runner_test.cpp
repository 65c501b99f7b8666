#include "coro/sync_wait.hpp"
#include "gpu/block_allocator.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/registry.hpp"
#include "models/gguf/file.hpp"
#include "models/gguf/writer.hpp"
#include "models/hf/folder.hpp"
#include "models/llama/runner.hpp"
#include "tests/models/smollm2.hpp"
#include "tests/support/tiny_llama.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

namespace aeg::models {
namespace {

using aeg::testing::tiny_llama_spec;
using kernels::dtype;

// A model resident on a CPU device with a runner and a KV pool, driven step by step.
class loaded {
public:
  loaded(const gguf::file& f, compute_format format, step_limits limits = {128, 8, 0},
         std::size_t kv_blocks = 64) {
    dev_ = *gpu::make_device({.backend = "cpu", .ordinal = 0, .capacity_bytes = 512 << 20});
    stream_ = std::move(*dev_->create_stream());
    ctx_ = std::move(*kernels::context::create(*stream_));
    event_ = std::move(*dev_->create_event());
    auto img = load_llama(f, format, *dev_);
    EXPECT_TRUE(img.has_value()) << (img ? "" : img.error().to_string());
    image_ = *img;
    weights_ = std::move(*dev_->allocate(image_->bytes().size()));
    EXPECT_TRUE(stream_->copy(weights_.data(), image_->bytes().data(), image_->bytes().size(),
                              gpu::copy_kind::host_to_device));
    kv_ = config().kv(format.kv_type());
    kv_memory_ = std::move(*dev_->allocate(kv_blocks * kv_.block_bytes()));
    blocks_ = std::make_unique<gpu::block_allocator>(kv_blocks);
    auto r = llama_runner::create(*dev_, *ctx_, config(), limits);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
    runner_ = std::move(*r);
  }

  ~loaded() {
    ctx_.reset();
    stream_.reset(); // finishes queued work (the weight copy) before the memory below goes
  }

  const llama_config& config() const { return image_->config(); }
  llama_runner& runner() { return *runner_; }

  std::vector<std::int32_t> blocks(std::size_t tokens) {
    std::vector<std::int32_t> ids;
    EXPECT_TRUE(blocks_->allocate(kernels::kv_geometry::blocks_for(tokens), ids));
    return ids;
  }

  /// Runs one step; returns (sampled tokens, their logits).
  result<std::pair<std::vector<std::int32_t>, std::vector<float>>>
  step(std::span<const sequence_step> steps) {
    const device_weights w{&config(), &image_->layout(), weights_.as<std::byte>()};
    if (auto r = runner_->enqueue(w, kv_.type, steps, kv_memory_.data(), true); !r)
      return tl::unexpected(r.error());
    EXPECT_TRUE(stream_->record(*event_));
    coro::sync_wait([](gpu::event* e) -> coro::task<void> { co_await *e; }(event_.get()));
    const auto s = runner_->sampled();
    const auto l = runner_->logits();
    return std::pair{std::vector<std::int32_t>(s.begin(), s.end()),
                     std::vector<float>(l.begin(), l.end())};
  }

  /// Greedy tokens after `prompt`, decoding one token per step. `min_gap`, when given, gets the
  /// smallest gap over the steps between the best logit and the next, over the largest |logit|.
  std::vector<std::int32_t> greedy(const std::vector<std::int32_t>& prompt, std::size_t n,
                                   float* min_gap = nullptr) {
    auto table = blocks(prompt.size() + n);
    std::vector<std::int32_t> seq = prompt, out;
    sequence_step st{seq, 0, table, true, {}};
    if (min_gap != nullptr)
      *min_gap = 1;
    for (std::size_t i = 0; i < n; ++i) {
      auto r = step(std::span(&st, 1));
      EXPECT_TRUE(r.has_value());
      if (min_gap != nullptr) {
        auto l = r->second;
        float scale = 0;
        for (float v : l)
          scale = std::max(scale, std::fabs(v));
        std::partial_sort(l.begin(), l.begin() + 2, l.end(), std::greater<>());
        *min_gap = std::min(*min_gap, (l[0] - l[1]) / scale);
      }
      out.push_back(r->first[0]);
      seq.push_back(r->first[0]);
      st = {std::span(seq).subspan(seq.size() - 1, 1), seq.size() - 1, table, true, {}};
    }
    return out;
  }

private:
  std::shared_ptr<gpu::device> dev_;
  std::unique_ptr<gpu::stream> stream_;
  std::unique_ptr<kernels::context> ctx_;
  std::unique_ptr<gpu::event> event_;
  std::shared_ptr<const model_image> image_;
  gpu::buffer weights_, kv_memory_;
  kernels::kv_geometry kv_;
  std::unique_ptr<gpu::block_allocator> blocks_;
  std::unique_ptr<llama_runner> runner_;
};

// A tiny llama's bytes and the file parsed from them (which points into the bytes).
struct tiny_file {
  explicit tiny_file(const tiny_llama_spec& spec) : bytes(aeg::testing::make_tiny_llama(spec)) {}
  std::vector<std::byte> bytes;
  result<gguf::file> file = gguf::file::parse(bytes);
  const gguf::file& operator*() const { return *file; }
};

std::vector<std::int32_t> some_tokens(std::size_t n, std::size_t vocab, std::uint32_t seed) {
  std::vector<std::int32_t> t(n);
  for (std::size_t i = 0; i < n; ++i)
    t[i] = static_cast<std::int32_t>((i * 2654435761u + seed * 40503u) % vocab);
  return t;
}

float max_relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  float err = 0, scale = 1e-20f;
  for (std::size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return err / scale;
}

TEST(LlamaRunner, EveryStoredWeightTypeRunsAndStaysCloseToTheFloatReference) {
  for (dtype t : {dtype::q4_1, dtype::q8_0, dtype::q4_0, dtype::q5_0, dtype::q2_k, dtype::q3_k,
                  dtype::q4_k, dtype::q5_k, dtype::q6_k, dtype::iq4_nl, dtype::iq4_xs, dtype::f16,
                  dtype::bf16, dtype::f32}) {
    tiny_llama_spec spec;
    spec.dim = 256;
    spec.ffn = 512;
    spec.heads = 4;
    spec.kv_heads = 2;
    spec.matrix_type = t;
    spec.embed_type = t;
    const tiny_file f(spec);
    const auto exact = compute_format::cpu_exact();
    loaded quant(*f, compute_format::for_backend(gpu::backend_kind::cpu));
    loaded ref(*f, exact);
    const auto prompt = some_tokens(20, quant.config().vocab_size, 1);
    auto tq = quant.blocks(20), tr = ref.blocks(20);
    sequence_step sq{prompt, 0, tq, true, {}}, sr{prompt, 0, tr, true, {}};
    auto a = quant.step(std::span(&sq, 1));
    auto b = ref.step(std::span(&sr, 1));
    ASSERT_TRUE(a && b) << kernels::traits(t).name;
    for (float v : a->second)
      ASSERT_TRUE(std::isfinite(v)) << kernels::traits(t).name;
    // Only the 8-bit rounding of activations (and the re-quantization to Q8_0 of Q5_0, IQ4_* and
    // the other types without a layout of their own) separates the CPU kernels from float math on
    // the same weights.
    EXPECT_LT(max_relative_error(a->second, b->second), 0.05f) << kernels::traits(t).name;
  }
}

// Q4_K, Q5_K, Q6_K, Q3_K and Q2_K matrices run as Q4_1x8, Q5_1x8, Q6_Kx8, Q3_Kx8 and Q2_Kx8
// (Q4_1, Q5_1 and Q8_0 where the rows are not a multiple of 8: the 323-token embedding), at 5,
// 6, 6.6, 3.6 and 2.6 bits a weight where the Q8_0 they used to become takes 8.5, and decode the
// greedy tokens that route and float weights decode.
TEST(LlamaRunner, KQuantMatricesRunInTheirOwnLayoutsAndDecodeTheTokensOfTheQ8_0RouteAndOfFloats) {
  struct route {
    dtype stored, plain, x8;
    double max_bytes_vs_q8_0;
    std::size_t min_decisive; // prompts of 8 whose greedy tokens the float model decides clearly
  };
  // The tiny Q3_K model's random 3-bit weights leave its best logits within 4% of each other
  // somewhere in every prompt's 16 tokens, so only its logits are compared; the Q2_K model's
  // decide half of the prompts clearly.
  for (const route& r : {route{dtype::q4_k, dtype::q4_1, dtype::q4_1x8, 2.0 / 3, 5},
                         route{dtype::q5_k, dtype::q5_1, dtype::q5_1x8, 3.0 / 4, 5},
                         route{dtype::q6_k, dtype::q8_0, dtype::q6_kx8, 0.85, 5},
                         route{dtype::q3_k, dtype::q8_0, dtype::q3_kx8, 0.6, 0},
                         route{dtype::q2_k, dtype::q8_0, dtype::q2_kx8, 0.4, 4}}) {
    SCOPED_TRACE(std::string(kernels::traits(r.stored).name));
    tiny_llama_spec spec;
    spec.dim = 256;
    spec.ffn = 512;
    spec.matrix_type = r.stored;
    spec.embed_type = r.stored;
    const tiny_file f(spec);
    const auto cpu = compute_format::for_backend(gpu::backend_kind::cpu);
    auto as_q8_0 = cpu;
    as_q8_0.cpu_weight_type = dtype::q8_0; // what every K-quant became before
    const auto planned = plan_llama(*f, cpu);
    const auto planned_q8 = plan_llama(*f, as_q8_0);
    ASSERT_TRUE(planned && planned_q8);
    const auto& lay = planned->second;
    EXPECT_EQ(lay.token_embd.type, r.plain);
    for (const auto& l : lay.layers)
      for (const auto* s : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down})
        EXPECT_EQ(s->type, r.x8);
    EXPECT_LT(static_cast<double>(lay.total_bytes),
              static_cast<double>(planned_q8->second.total_bytes) * r.max_bytes_vs_q8_0);

    loaded quant(*f, cpu), old(*f, as_q8_0), ref(*f, compute_format::cpu_exact());
    // Greedy tokens of several prompts. Where the float model's best two logits come within 4%
    // of the largest (each route moves a logit by up to 2% of it, mostly for its 8-bit
    // activations), a near tie may go either way and only the logits are compared: the new
    // route's, at the prompt's last position, are closer to the float ones than the Q8_0
    // route's were.
    std::size_t decisive = 0;
    double err_kq = 0, err_q8 = 0;
    for (std::uint32_t seed = 1; seed <= 8; ++seed) {
      const auto prompt = some_tokens(20, quant.config().vocab_size, seed);
      auto logits = [&](loaded& m) {
        auto table = m.blocks(prompt.size());
        sequence_step st{prompt, 0, table, true, {}};
        return m.step(std::span(&st, 1)).value().second;
      };
      const auto want = logits(ref), got = logits(quant), got_q8 = logits(old);
      EXPECT_LT(max_relative_error(got, want), 0.05f) << "prompt " << seed;
      for (std::size_t i = 0; i < want.size(); ++i) {
        err_kq += (got[i] - want[i]) * (got[i] - want[i]);
        err_q8 += (got_q8[i] - want[i]) * (got_q8[i] - want[i]);
      }
      float gap = 0;
      const auto tokens = ref.greedy(prompt, 16, &gap);
      if (gap < 0.04f)
        continue;
      ++decisive;
      EXPECT_EQ(quant.greedy(prompt, 16), tokens) << "prompt " << seed;
      EXPECT_EQ(old.greedy(prompt, 16), tokens) << "prompt " << seed;
    }
    EXPECT_GE(decisive, r.min_decisive);
    EXPECT_LT(err_kq, err_q8);
  }
}

TEST(LlamaRunner, ASequenceGetsTheSameLogitsAloneAndInABatch) {
  const tiny_file f({});
  loaded m(*f, compute_format::for_backend(gpu::backend_kind::cpu));
  const std::size_t vocab = m.config().vocab_size;
  std::vector<std::vector<std::int32_t>> prompts = {
      some_tokens(5, vocab, 1), some_tokens(33, vocab, 2), some_tokens(1, vocab, 3),
      some_tokens(17, vocab, 4)};
  std::vector<std::vector<float>> alone;
  for (const auto& p : prompts) {
    auto t = m.blocks(p.size());
    sequence_step st{p, 0, t, true, {}};
    alone.push_back(m.step(std::span(&st, 1))->second);
  }
  std::vector<std::vector<std::int32_t>> tables;
  std::vector<sequence_step> batch;
  for (const auto& p : prompts)
    tables.push_back(m.blocks(p.size()));
  for (std::size_t i = 0; i < prompts.size(); ++i)
    batch.push_back({prompts[i], 0, tables[i], true, {}});
  const auto together = m.step(batch)->second;
  for (std::size_t i = 0; i < prompts.size(); ++i)
    for (std::size_t v = 0; v < vocab; ++v)
      ASSERT_EQ(together[i * vocab + v], alone[i][v]) << "sequence " << i << " token " << v;
}

TEST(LlamaRunner, ChunkedPrefillEqualsOnePrefillAndDecodingEqualsPrefilling) {
  const tiny_file f({});
  loaded m(*f, compute_format::for_backend(gpu::backend_kind::cpu));
  const auto prompt = some_tokens(40, m.config().vocab_size, 7);
  auto t1 = m.blocks(40);
  sequence_step whole{prompt, 0, t1, true, {}};
  const auto once = m.step(std::span(&whole, 1))->second;

  auto t2 = m.blocks(40);
  const std::span<const std::int32_t> p(prompt);
  for (std::size_t start : {0, 16, 32}) {
    const std::size_t n = std::min<std::size_t>(16, 40 - start);
    sequence_step chunk{p.subspan(start, n), start, t2, start + n == 40, {}};
    auto r = m.step(std::span(&chunk, 1));
    ASSERT_TRUE(r.has_value());
    if (start + n == 40)
      EXPECT_EQ(r->second, once); // bit for bit: the same arithmetic per row
  }
  // Token by token: each step attends to the cached keys of all earlier ones.
  auto t3 = m.blocks(40);
  std::vector<float> last;
  for (std::size_t i = 0; i < 40; ++i) {
    sequence_step one{p.subspan(i, 1), i, t3, i == 39, {}};
    auto r = m.step(std::span(&one, 1));
    ASSERT_TRUE(r.has_value());
    if (i == 39)
      last = r->second;
  }
  EXPECT_EQ(last, once);
}

TEST(LlamaRunner, RefusesStepsItCannotRunWithClearErrors) {
  const tiny_file f({});
  loaded m(*f, compute_format::for_backend(gpu::backend_kind::cpu), {32, 2, 0});
  const auto vocab = m.config().vocab_size;
  auto table = m.blocks(64);
  const auto long_prompt = some_tokens(33, vocab, 1);
  sequence_step too_long{long_prompt, 0, table, true, {}};
  auto r = m.step(std::span(&too_long, 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);

  const std::vector<std::int32_t> bad = {0, static_cast<std::int32_t>(vocab)};
  sequence_step out_of_vocab{bad, 0, table, true, {}};
  r = m.step(std::span(&out_of_vocab, 1));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("vocabulary"), std::string::npos);

  const auto twenty = some_tokens(20, vocab, 2);
  sequence_step short_table{twenty, 0, std::span(table).first(1), true, {}};
  r = m.step(std::span(&short_table, 1));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("KV blocks"), std::string::npos);

  const std::vector<std::int32_t> one = {1};
  sequence_step past_context{one, m.config().context_length, table, true, {}};
  r = m.step(std::span(&past_context, 1));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("context length"), std::string::npos);
}

TEST(LlamaRunner, SmolLM2KnowsTheCapitalOfFrance) {
  AEG_REQUIRE_SMOLLM2(tok);
  loaded m(*testing::smollm2_file(), compute_format::for_backend(gpu::backend_kind::cpu),
           {64, 1, 0}, 8);
  const auto out = m.greedy(tok.encode("The capital of France is", false), 3);
  EXPECT_EQ(tok.decode(std::span(out).first(1)), " Paris");
}

// Each family's tiny model against Hugging Face transformers (tests/models/family_fixtures.py
// wrote the GGUF, the Hugging Face folder and what transformers computed): float weights and
// KV, the last prompt position's logits within 1e-3 of the largest, and the same 32 greedy
// tokens. "-hf" runs the folder (config.json, safetensors, tokenizer.json) instead of the GGUF.
class ModelFamilies : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelFamilies, MatchTransformers) {
  const std::string dir = std::string(AEG_SOURCE_DIR) + "/tests/models/fixtures/";
  const bool folder = GetParam().ends_with("-hf");
  const std::string base = dir + GetParam().substr(0, GetParam().find('-'));
  auto f = open_model(folder ? base + "-tiny-hf" : base + "-tiny.gguf");
  ASSERT_TRUE(f.has_value()) << f.error().to_string();
  std::ifstream in(base + "-tiny.json");
  ASSERT_TRUE(in) << base << "-tiny.json is missing";
  const auto expected = nlohmann::json::parse(in);
  const auto prompt = expected.at("prompt").get<std::vector<std::int32_t>>();
  const auto want_logits = expected.at("logits").get<std::vector<float>>();
  const auto want_greedy = expected.at("greedy").get<std::vector<std::int32_t>>();

  loaded m(*f, compute_format::cpu_exact());
  EXPECT_EQ(to_string(m.config().family), expected.at("architecture").get<std::string>());
  auto table = m.blocks(prompt.size() + want_greedy.size());
  sequence_step st{prompt, 0, table, true, {}};
  auto r = m.step(std::span(&st, 1));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  ASSERT_EQ(r->second.size(), want_logits.size());
  EXPECT_LT(max_relative_error(r->second, want_logits), 1e-3f);
  EXPECT_EQ(m.greedy(prompt, want_greedy.size()), want_greedy);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelFamilies,
                         ::testing::Values("llama", "llama3", "qwen2", "qwen3", "llama-hf",
                                           "llama3-hf", "qwen2-hf", "qwen3-hf"),
                         [](const auto& info) {
                           auto name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// The synthetic shapes are the real models' shapes: their parameter counts as published.
TEST(ModelFamilies, SyntheticShapesHaveTheirModelsParameterCounts) {
  const std::pair<const char*, double> published[] = {
      {"smollm2-135m", 134.5e6}, {"llama-3.2-1b", 1.236e9}, {"llama-2-7b", 6.738e9},
      {"llama-2-13b", 13.016e9}, {"llama-3-8b", 8.030e9},   {"yi-9b", 8.829e9},
      {"qwen2.5-7b", 7.616e9},   {"qwen2.5-72b", 72.706e9}};
  ASSERT_EQ(llama_config::synthetic_shapes().size(), std::size(published));
  for (const auto& [name, params] : published) {
    auto c = llama_config::synthetic(name);
    ASSERT_TRUE(c.has_value()) << name;
    ASSERT_TRUE(c->validate()) << name;
    EXPECT_NEAR(static_cast<double>(c->num_parameters()) / params, 1.0, 0.01) << name;
  }
  EXPECT_EQ(llama_config::synthetic("qwen2.5-7b")->family, model_family::qwen2);
}

// Architectures that are not one of the families are refused by name, with the ones that run.
TEST(ModelFamilies, AnUnknownArchitectureIsRefusedByName) {
  gguf::writer w;
  w.add_string("general.architecture", "gemma2");
  const auto bytes = w.bytes();
  auto f = gguf::file::parse(bytes);
  ASSERT_TRUE(f.has_value());
  auto c = llama_config::from_gguf(*f);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find("'gemma2'"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("qwen2"), std::string::npos) << c.error().message;
}

} // namespace
} // namespace aeg::models
