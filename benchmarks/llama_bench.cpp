// Forward-pass throughput of the llama runner on one device, against the memory-bandwidth bound
// measured in the same run.
//
//   llama_bench [--model FILE | --synthetic SHAPE] [--backend cpu|cuda] [--half bf16|f16]
//               [--batches 1,4,16]
//               [--prompt 128] [--steps 32] [--rounds 5] [--json FILE] [--profile]
//
// Prefill: one step of `prompt` tokens per sequence, for each batch size. Decode: `steps` steps of
// one token per sequence after a prefill. The bound of a decode step is the bytes it must read
// (every weight once) divided by the bandwidth measured here: a parallel read of a buffer larger
// than the caches on the CPU, a device-to-device copy on CUDA (bytes read).

#include "benchmarks/cpu_bandwidth.hpp"
#include "coro/sync_wait.hpp"
#include "gpu/block_allocator.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/registry.hpp"
#include "kernels/context.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"
#include "models/gguf/file.hpp"
#include "models/hf/folder.hpp"
#include "models/llama/runner.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <numeric>

namespace {

using namespace aeg;
using bench::clock_type;
using bench::cpu_read_bandwidth;
using bench::seconds_since;

struct fixture {
  std::shared_ptr<gpu::device> dev;
  std::unique_ptr<gpu::stream> stream;
  std::unique_ptr<kernels::context> ctx;
  std::unique_ptr<gpu::event> event;
  std::shared_ptr<const models::model_image> image;
  gpu::buffer weights, kv;
  std::unique_ptr<models::llama_runner> runner;

  void wait() {
    (void)stream->record(*event);
    coro::sync_wait([](gpu::event* e) -> coro::task<void> { co_await *e; }(event.get()));
  }
};

// Bytes per second of a device-to-device copy, counting the bytes read.
double device_copy_bandwidth(fixture& f, int passes) {
  const std::size_t bytes = std::size_t{1} << 30;
  auto a = f.dev->allocate(bytes), b = f.dev->allocate(bytes);
  if (!a || !b)
    return 0;
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    const auto t = clock_type::now();
    (void)f.stream->copy(b->data(), a->data(), bytes, gpu::copy_kind::device_to_device);
    f.wait();
    best = std::max(best, static_cast<double>(bytes) / seconds_since(t));
  }
  return best;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"llama forward-pass throughput against the memory-bandwidth bound"};
  std::string model = "models/SmolLM2-135M-Instruct.Q4_1.gguf", synthetic, backend = "cpu",
              json_path, batches_arg = "1,4,16";
  std::size_t prompt = 128, steps = 32, rounds = 5;
  app.add_option("--model", model, "GGUF model")->capture_default_str();
  app.add_option("--synthetic", synthetic, "Random weights of a known shape instead of a file");
  app.add_option("--backend", backend, "cpu or cuda")->capture_default_str();
  std::string half = "bf16";
  app.add_option("--half", half, "CUDA weight and KV type: bf16 or f16")
      ->check(CLI::IsMember({"bf16", "f16"}))
      ->capture_default_str();
  app.add_option("--batches", batches_arg, "Batch sizes, comma-separated")->capture_default_str();
  app.add_option("--prompt", prompt, "Prompt tokens per sequence")->capture_default_str();
  app.add_option("--steps", steps, "Decode steps timed per batch size")->capture_default_str();
  app.add_option("--rounds", rounds,
                 "Timed rounds of the prefill and of the decode steps (each from the end of the "
                 "prompt); the table shows the median and the best")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000}))
      ->capture_default_str();
  app.add_option("--json", json_path, "Also write the results here");
  bool profile = false;
  app.add_flag("--profile", profile,
               "Time every op of the decode steps (CPU) and print where the "
               "time goes");
  CLI11_PARSE(app, argc, argv);

  std::vector<std::size_t> batches;
  for (std::size_t pos = 0; pos < batches_arg.size();) {
    const auto comma = batches_arg.find(',', pos);
    batches.push_back(std::stoul(batches_arg.substr(pos, comma - pos)));
    pos = comma == std::string::npos ? batches_arg.size() : comma + 1;
  }
  const std::size_t max_batch = *std::max_element(batches.begin(), batches.end());

  fixture f;
  auto dev = gpu::make_device({.backend = backend,
                               .ordinal = 0,
                               .capacity_bytes = backend == "cpu" ? std::size_t{4} << 30 : 0});
  if (!dev) {
    fmt::print(stderr, "llama_bench: {}\n", dev.error().to_string());
    return 1;
  }
  f.dev = *dev;
  f.stream = std::move(*f.dev->create_stream());
  f.ctx = std::move(*kernels::context::create(*f.stream));
  f.event = std::move(*f.dev->create_event());
  auto format = models::compute_format::for_backend(f.dev->kind());
  format.half_type = half == "f16" ? kernels::dtype::f16 : kernels::dtype::bf16;
  if (!synthetic.empty()) {
    auto cfg = models::llama_config::synthetic(synthetic);
    if (!cfg) {
      fmt::print(stderr, "llama_bench: {}\n", cfg.error().to_string());
      return 1;
    }
    auto img = models::synthetic_llama(*cfg, format, *f.dev, 1);
    if (!img) {
      fmt::print(stderr, "llama_bench: {}\n", img.error().to_string());
      return 1;
    }
    f.image = *img;
  } else {
    auto file = models::open_model(model);
    if (!file) {
      fmt::print(stderr, "llama_bench: {} (run scripts/fetch-model)\n", file.error().to_string());
      return 1;
    }
    auto img = models::load_llama(*file, format, *f.dev);
    if (!img) {
      fmt::print(stderr, "llama_bench: {}\n", img.error().to_string());
      return 1;
    }
    f.image = *img;
  }
  const auto& cfg = f.image->config();
  const std::size_t weight_bytes = f.image->bytes().size();
  f.weights = std::move(*f.dev->allocate(weight_bytes));
  (void)f.stream->copy(f.weights.data(), f.image->bytes().data(), weight_bytes,
                       gpu::copy_kind::host_to_device);
  const auto kv = cfg.kv(format.kv_type());
  const std::size_t ctx_tokens = prompt + steps + 1;
  const std::size_t blocks_per_seq = kernels::kv_geometry::blocks_for(ctx_tokens);
  f.kv = std::move(*f.dev->allocate(max_batch * blocks_per_seq * kv.block_bytes()));
  f.runner = std::move(*models::llama_runner::create(
      *f.dev, *f.ctx, cfg, {std::max(prompt * max_batch, max_batch), max_batch, 0}));
  f.wait();

  auto measure_bandwidth = [&](int passes) {
    return f.dev->kind() == gpu::backend_kind::cpu ? cpu_read_bandwidth(passes)
                                                   : device_copy_bandwidth(f, passes);
  };
  const double bandwidth = measure_bandwidth(5);
  const double bound = static_cast<double>(weight_bytes) / bandwidth;
  fmt::print("{} on {}: {:.1f} M parameters, {:.1f} MiB of weights; measured bandwidth {:.1f} GB/s "
             "-> decode bound {:.3f} ms/step\n",
             cfg.name, f.dev->name(), cfg.num_parameters() / 1e6, weight_bytes / 1048576.0,
             bandwidth / 1e9, bound * 1e3);
  fmt::print("decode steps at context {}..{}; medians of {} rounds, and the best; each round's "
             "bound from the bandwidth measured just before it\n",
             prompt, prompt + steps, rounds);
  fmt::print("{:>6} {:>14} {:>14} {:>9} {:>9} {:>9} {:>9}\n", "batch", "prefill tok/s",
             "decode tok/s", "ms/step", "best", "vs bound", "best vs");

  const models::device_weights w{&cfg, &f.image->layout(), f.weights.as<std::byte>()};
  nlohmann::json results = nlohmann::json::array();
  std::vector<std::int32_t> tokens(prompt);
  for (std::size_t i = 0; i < prompt; ++i)
    tokens[i] = static_cast<std::int32_t>((i * 7919 + 13) % cfg.vocab_size);
  for (std::size_t batch : batches) {
    std::vector<std::vector<std::int32_t>> tables(batch);
    for (std::size_t s = 0; s < batch; ++s)
      for (std::size_t b = 0; b < blocks_per_seq; ++b)
        tables[s].push_back(static_cast<std::int32_t>(s * blocks_per_seq + b));
    std::vector<models::sequence_step> st(batch);
    for (std::size_t s = 0; s < batch; ++s)
      st[s] = {tokens, 0, tables[s], true, {}};
    // Warm up once, then time the prefill and the decode steps in rounds: this machine shares
    // its cores and memory, so single timings wander; medians and bests do less.
    (void)f.runner->enqueue(w, kv.type, st, f.kv.data());
    f.wait();
    std::vector<double> prefill_s, step_s, ratio;
    std::vector<std::int32_t> next(batch, 1);
    kernels::profile_cpu_ops(profile);
    for (std::size_t round = 0; round < rounds; ++round) {
      for (std::size_t s = 0; s < batch; ++s)
        st[s] = {tokens, 0, tables[s], true, {}};
      auto t = clock_type::now();
      (void)f.runner->enqueue(w, kv.type, st, f.kv.data());
      f.wait();
      prefill_s.push_back(seconds_since(t));
      // The bound of this round, from the bandwidth measured just before it.
      const double round_bound = static_cast<double>(weight_bytes) / measure_bandwidth(2);
      t = clock_type::now();
      for (std::size_t k = 0; k < steps; ++k) {
        for (std::size_t s = 0; s < batch; ++s)
          st[s] = {std::span(next).subspan(s, 1), prompt + k, tables[s], true, {}};
        (void)f.runner->enqueue(w, kv.type, st, f.kv.data());
        f.wait();
        const auto picked = f.runner->sampled();
        std::copy(picked.begin(), picked.end(), next.begin());
      }
      step_s.push_back(seconds_since(t) / static_cast<double>(steps));
      ratio.push_back(step_s.back() / round_bound);
    }
    std::sort(ratio.begin(), ratio.end());
    std::sort(prefill_s.begin(), prefill_s.end());
    std::sort(step_s.begin(), step_s.end());
    const double prefill = prefill_s[prefill_s.size() / 2];
    const double step = step_s[step_s.size() / 2], best = step_s.front();
    if (profile) {
      kernels::profile_cpu_ops(false);
      const double timed =
          std::accumulate(step_s.begin(), step_s.end(), 0.0) * static_cast<double>(steps) +
          std::accumulate(prefill_s.begin(), prefill_s.end(), 0.0);
      for (const auto& op : kernels::cpu_op_times())
        fmt::print("    {:>12}: {:5.1f}% of the timed work, {} calls per round\n", op.name,
                   100 * op.seconds / timed, op.calls / rounds);
    }
    const double prefill_tps = static_cast<double>(batch * prompt) / prefill;
    const double decode_tps = static_cast<double>(batch) / step;
    fmt::print("{:>6} {:>14.0f} {:>14.1f} {:>9.3f} {:>9.3f} {:>8.2f}x {:>8.2f}x\n", batch,
               prefill_tps, decode_tps, step * 1e3, best * 1e3, ratio[ratio.size() / 2],
               ratio.front());
    results.push_back({{"batch", batch},
                       {"prefill_tokens_per_s", prefill_tps},
                       {"decode_tokens_per_s", decode_tps},
                       {"decode_step_ms_median", step * 1e3},
                       {"decode_step_ms_best", best * 1e3},
                       {"decode_step_vs_bound_median", ratio[ratio.size() / 2]},
                       {"decode_step_vs_bound_best", ratio.front()}});
  }
  if (!json_path.empty()) {
    nlohmann::json doc{{"model", cfg.name},
                       {"device", f.dev->name()},
                       {"weight_bytes", weight_bytes},
                       {"bandwidth_bytes_per_s", bandwidth},
                       {"decode_bound_ms", bound * 1e3},
                       {"prompt_tokens", prompt},
                       {"decode_steps", steps},
                       {"rounds", rounds},
                       {"results", results}};
    std::ofstream(json_path) << doc.dump(2) << "\n";
  }
  return 0;
}
