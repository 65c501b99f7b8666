// The llama forward pass on CUDA against the CPU: logits of a tiny model within a tolerance, and
// SmolLM2's greedy tokens for 64 steps. Skipped without a GPU (and without the model file).

#include "coro/sync_wait.hpp"
#include "gpu/block_allocator.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/registry.hpp"
#include "kernels/context.hpp"
#include "models/gguf/file.hpp"
#include "models/llama/runner.hpp"
#include "models/tokenizer/tokenizer.hpp"
#include "tests/support/tiny_llama.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

namespace aeg::models {
namespace {

// A model on one device, run one sequence at a time.
class on_device {
public:
  on_device(const gguf::file& f, const std::string& backend, compute_format format) {
    auto dev = gpu::make_device({.backend = backend, .ordinal = 0, .capacity_bytes = 0});
    if (!dev) {
      error_ = dev.error().to_string();
      return;
    }
    dev_ = *dev;
    stream_ = std::move(*dev_->create_stream());
    ctx_ = std::move(*kernels::context::create(*stream_));
    event_ = std::move(*dev_->create_event());
    image_ = *load_llama(f, format, *dev_);
    weights_ = std::move(*dev_->allocate(image_->bytes().size()));
    (void)stream_->copy(weights_.data(), image_->bytes().data(), image_->bytes().size(),
                        gpu::copy_kind::host_to_device);
    kv_ = image_->config().kv(format.kv_type());
    kv_mem_ = std::move(*dev_->allocate(64 * kv_.block_bytes()));
    runner_ = std::move(*llama_runner::create(*dev_, *ctx_, image_->config(), {256, 1, 0}));
    for (std::int32_t b = 0; b < 64; ++b)
      table_.push_back(b);
  }
  ~on_device() {
    ctx_.reset();
    stream_.reset();
  }
  const std::string& error() const { return error_; }

  // Logits after the prompt, then `steps` greedy tokens.
  std::pair<std::vector<float>, std::vector<std::int32_t>> run(std::vector<std::int32_t> seq,
                                                               std::size_t steps) {
    const device_weights w{&image_->config(), &image_->layout(), weights_.as<std::byte>()};
    sequence_step st{seq, 0, table_, true, {}};
    std::vector<float> logits;
    std::vector<std::int32_t> out;
    for (std::size_t i = 0; i <= steps; ++i) {
      EXPECT_TRUE(runner_->enqueue(w, kv_.type, std::span(&st, 1), kv_mem_.data(), i == 0));
      EXPECT_TRUE(stream_->record(*event_));
      coro::sync_wait([](gpu::event* e) -> coro::task<void> { co_await *e; }(event_.get()));
      if (i == 0) {
        const auto l = runner_->logits();
        logits.assign(l.begin(), l.end());
      }
      if (i == steps)
        break;
      out.push_back(runner_->sampled()[0]);
      seq.push_back(out.back());
      st = {std::span(seq).subspan(seq.size() - 1, 1), seq.size() - 1, table_, true, {}};
    }
    return {logits, out};
  }

private:
  std::string error_;
  std::shared_ptr<gpu::device> dev_;
  std::unique_ptr<gpu::stream> stream_;
  std::unique_ptr<kernels::context> ctx_;
  std::unique_ptr<gpu::event> event_;
  std::shared_ptr<const model_image> image_;
  gpu::buffer weights_, kv_mem_;
  kernels::kv_geometry kv_;
  std::unique_ptr<llama_runner> runner_;
  std::vector<std::int32_t> table_;
};

TEST(LlamaCuda, TinyModelLogitsMatchTheCpu) {
  if (!gpu::gpu_available())
    GTEST_SKIP() << "no GPU visible";
  aeg::testing::tiny_llama_spec spec;
  spec.dim = 256;
  spec.ffn = 512;
  const auto bytes = aeg::testing::make_tiny_llama(spec);
  auto f = gguf::file::parse(bytes);
  ASSERT_TRUE(f.has_value());
  on_device cpu(*f, "cpu", compute_format::cpu_exact());
  for (auto half : {kernels::dtype::f16, kernels::dtype::bf16}) {
    on_device gpu(*f, "cuda", {gpu::backend_kind::cuda, half, {}});
    ASSERT_TRUE(gpu.error().empty()) << gpu.error();
    std::vector<std::int32_t> prompt;
    for (int i = 0; i < 40; ++i)
      prompt.push_back((i * 37 + 11) % 300);
    const auto a = cpu.run(prompt, 0).first;
    const auto b = gpu.run(prompt, 0).first;
    ASSERT_EQ(a.size(), b.size());
    float err = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      err = std::max(err, std::fabs(a[i] - b[i]));
      scale = std::max(scale, std::fabs(a[i]));
    }
    // Half-precision weights, activations into the products and KV: about 1% of the largest logit.
    EXPECT_LT(err / scale, half == kernels::dtype::f16 ? 0.02f : 0.05f)
        << kernels::traits(half).name;
  }
}

// Each family's tiny model (tests/models/fixtures, checked against transformers on the CPU):
// CUDA's half-precision logits close to the CPU's float ones.
TEST(LlamaCuda, EveryFamilysTinyModelMatchesTheCpu) {
  if (!gpu::gpu_available())
    GTEST_SKIP() << "no GPU visible";
  for (const char* family : {"llama", "llama3", "qwen2", "qwen3"}) {
    auto f = gguf::file::open(std::string(AEG_SOURCE_DIR) + "/tests/models/fixtures/" + family +
                              "-tiny.gguf");
    ASSERT_TRUE(f.has_value()) << f.error().to_string();
    const std::vector<std::int32_t> prompt = {3, 17, 42, 99, 7, 250, 128, 64, 5, 201, 33, 150};
    on_device cpu(*f, "cpu", compute_format::cpu_exact());
    on_device gpu(*f, "cuda", {gpu::backend_kind::cuda, kernels::dtype::f16, {}});
    ASSERT_TRUE(gpu.error().empty()) << gpu.error();
    const auto a = cpu.run(prompt, 0).first;
    const auto b = gpu.run(prompt, 0).first;
    ASSERT_EQ(a.size(), b.size()) << family;
    float err = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      err = std::max(err, std::fabs(a[i] - b[i]));
      scale = std::max(scale, std::fabs(a[i]));
    }
    EXPECT_LT(err / scale, 0.02f) << family;
  }
}

TEST(LlamaCuda, SmolLM2GreedyTokensAgreeWithTheCpuFor64Steps) {
  if (!gpu::gpu_available())
    GTEST_SKIP() << "no GPU visible";
  const std::string path = std::string(AEG_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path))
    GTEST_SKIP() << path << " is missing; run scripts/fetch-model";
  auto f = gguf::file::open(path);
  ASSERT_TRUE(f.has_value());
  auto tok = tokenizer::from_gguf(*f);
  ASSERT_TRUE(tok.has_value());
  const auto prompt = tok->encode("The history of the printing press begins in", false);
  // The CPU's float path: the GPU's half-precision products should pick the same tokens.
  on_device cpu(*f, "cpu", compute_format::cpu_exact());
  on_device gpu(*f, "cuda", compute_format::for_backend(gpu::backend_kind::cuda));
  ASSERT_TRUE(gpu.error().empty()) << gpu.error();
  const auto a = cpu.run(prompt, 64).second;
  const auto b = gpu.run(prompt, 64).second;
  EXPECT_EQ(a, b) << "cpu: " << tok->decode(a) << "\ncuda: " << tok->decode(b);
}

} // namespace
} // namespace aeg::models
