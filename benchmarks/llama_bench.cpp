// Forward-pass throughput of the llama runner on one device, against the memory-bandwidth bound
// measured in the same run.
//
//   llama_bench [--model FILE | --synthetic SHAPE] [--backend cpu|cuda] [--half bf16|f16]
//               [--batches 1,4,16]
//               [--prompt 128] [--steps 32] [--rounds 5] [--json FILE] [--profile]
//               [--layers N] [--long-context [--decode-only]]
//
// Prefill: one step of `prompt` tokens per sequence, for each batch size. Decode: `steps` steps of
// one token per sequence after a prefill. The bound of a decode step is the bytes it must read
// (every weight once) divided by the bandwidth measured here: a parallel read of a buffer larger
// than the caches on the CPU, a device-to-device copy on CUDA (bytes read).
//
// --long-context times, for one sequence and in alternating rounds, a prefill of 512 and one of
// 8128 tokens and decode steps from context 128 and from 4096, and prints how much dearer the
// long context is per token against the 1.5x target. --layers keeps a synthetic shape's first N
// layers: every layer does the same work, and a prefill runs the output layer for its last row
// only, so a few layers of a 7B shape give the whole model's prefill ratio in minutes.

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

  fixture() = default;
  fixture(const fixture&) = delete;
  fixture& operator=(const fixture&) = delete;
  // The stream's work ends before the buffers it reads go (the benchmark may stop midway).
  ~fixture() {
    if (stream && event)
      wait();
  }

  void wait() {
    (void)stream->record(*event);
    coro::sync_wait([](gpu::event* e) -> coro::task<void> { co_await *e; }(event.get()));
  }

  // One forward step, run to its end; a step the runner refuses stops the benchmark with its
  // reason rather than being timed as if it ran.
  void step(const models::device_weights& w, kernels::dtype kv_type,
            std::span<const models::sequence_step> st) {
    if (auto r = runner->enqueue(w, kv_type, st, kv.data()); !r)
      throw std::runtime_error(r.error().to_string());
    wait();
  }
};

// The value of a result, or the benchmark stops with what went wrong.
template <class T>
T checked(result<T> r, const char* what) {
  if (!r)
    throw std::runtime_error(std::string(what) + ": " + r.error().to_string());
  return std::move(*r);
}

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

// Bytes per second the decode bound is taken from: a parallel read of the host's memory for the
// CPU, a device-to-device copy on a GPU.
double measure_bandwidth(fixture& f, int passes) {
  return f.dev->kind() == gpu::backend_kind::cpu ? cpu_read_bandwidth(passes)
                                                 : device_copy_bandwidth(f, passes);
}

// A prompt of `n` tokens spread over the vocabulary.
std::vector<std::int32_t> prompt_of(std::size_t n, std::size_t vocab) {
  std::vector<std::int32_t> tokens(n);
  for (std::size_t i = 0; i < n; ++i)
    tokens[i] = static_cast<std::int32_t>((i * 7919 + 13) % vocab);
  return tokens;
}

std::shared_ptr<const models::model_image>
load_image(const std::string& path, const models::compute_format& format, gpu::device& dev) {
  auto file = models::open_model(path);
  if (!file)
    throw std::runtime_error(file.error().to_string() + " (run scripts/fetch-model)");
  return checked(models::load_llama(*file, format, dev), "loading the model");
}

// Random weights of `shape`, its first `layers` layers only when not 0.
std::shared_ptr<const models::model_image> synthetic_image(const std::string& shape,
                                                           std::size_t layers,
                                                           const models::compute_format& format,
                                                           gpu::device& dev) {
  auto cfg = checked(models::llama_config::synthetic(shape), "--synthetic");
  if (layers > cfg.num_layers)
    throw std::runtime_error(
        fmt::format("--layers {}: {} has {} layers", layers, shape, cfg.num_layers));
  if (layers) {
    cfg.num_layers = layers;
    cfg.name += fmt::format(" (first {} layers)", layers);
  }
  return checked(models::synthetic_llama(cfg, format, dev, 1), "random weights");
}

// Medians of alternating rounds: the long and the short context share each round's machine, and
// the ratios are each round's own.
struct long_context_result {
  double prefill_short_tps = 0, prefill_long_tps = 0, step_short_ms = 0, step_long_ms = 0;
  double prefill_ratio = 0, decode_ratio = 0;
};

constexpr std::size_t prefill_short = 512, prefill_long = 8128;
constexpr std::size_t decode_short = 128, decode_long = 4096;

double median(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// `decode_only`: no prefill is timed, and the KV the decode steps read holds a pattern written
// here (a step's cost does not depend on the values), so that a whole 7B model's decode ratio
// does not wait for an 8k prefill through every layer.
long_context_result time_long_contexts(fixture& f, const models::device_weights& w,
                                       kernels::dtype kv_type, std::span<const std::int32_t> table,
                                       std::size_t steps, std::size_t rounds, bool decode_only) {
  const auto tokens = prompt_of(prefill_long, w.config->vocab_size);
  auto prefill = [&](std::size_t n) {
    const std::vector<models::sequence_step> st{{std::span(tokens).first(n), 0, table, true, {}}};
    const auto t = clock_type::now();
    f.step(w, kv_type, st);
    return static_cast<double>(n) / seconds_since(t);
  };
  auto decode = [&](std::size_t from) {
    std::int32_t next = 1;
    const auto t = clock_type::now();
    for (std::size_t k = 0; k < steps; ++k) {
      const std::vector<models::sequence_step> st{{std::span(&next, 1), from + k, table, true, {}}};
      f.step(w, kv_type, st);
      next = f.runner->sampled().front();
    }
    return seconds_since(t) * 1e3 / static_cast<double>(steps);
  };
  if (decode_only) {
    // Small values of either KV type: 1/64 as f16 pairs, or as f32.
    const std::uint32_t pattern = kv_type == kernels::dtype::f32 ? 0x3C800000u : 0x24002400u;
    std::fill_n(f.kv.as<std::uint32_t>(), f.kv.bytes() / 4, pattern);
  } else {
    // The long prefill first: it also writes the KV the decode steps read.
    fmt::print(stderr, "warming up: a prefill of {} tokens\n", prefill_long);
    (void)prefill(prefill_long);
  }
  std::vector<double> ps, pl, pr, ds, dl, dr;
  for (std::size_t r = 0; r < rounds; ++r) {
    if (!decode_only) {
      ps.push_back(prefill(prefill_short));
      pl.push_back(prefill(prefill_long));
      pr.push_back(ps.back() / pl.back());
    }
    ds.push_back(decode(decode_short));
    dl.push_back(decode(decode_long));
    dr.push_back(dl.back() / ds.back());
    if (!decode_only)
      fmt::print(stderr, "round {}/{}: prefill {:.0f} and {:.0f} tok/s ({:.2f}x), ", r + 1, rounds,
                 ps.back(), pl.back(), pr.back());
    else
      fmt::print(stderr, "round {}/{}: ", r + 1, rounds);
    fmt::print(stderr, "decode {:.2f} and {:.2f} ms ({:.2f}x)\n", ds.back(), dl.back(), dr.back());
  }
  return {median(ps), median(pl), median(ds), median(dl), median(pr), median(dr)};
}

void report_long_contexts(const long_context_result& r, const std::string& model,
                          const std::string& device, std::size_t steps, std::size_t rounds,
                          bool decode_only, const std::string& json_path) {
  auto verdict = [](double ratio) { return ratio <= 1.5 ? "within 1.5x" : "over 1.5x"; };
  fmt::print("one sequence, medians of {} alternating rounds ({} decode steps each) and of each "
             "round's ratio\n",
             rounds, steps);
  if (!decode_only)
    fmt::print("prefill {:>5} tokens: {:9.1f} tok/s\nprefill {:>5} tokens: {:9.1f} tok/s  -> "
               "{:.2f}x the cost per token ({})\n",
               prefill_short, r.prefill_short_tps, prefill_long, r.prefill_long_tps,
               r.prefill_ratio, verdict(r.prefill_ratio));
  fmt::print("decode from {:>5}:    {:9.2f} ms/step\ndecode from {:>5}:    {:9.2f} ms/step -> "
             "{:.2f}x the cost per step ({})\n",
             decode_short, r.step_short_ms, decode_long, r.step_long_ms, r.decode_ratio,
             verdict(r.decode_ratio));
  if (json_path.empty())
    return;
  nlohmann::json doc{{"model", model},
                     {"device", device},
                     {"rounds", rounds},
                     {"decode_steps", steps},
                     {"decode_step_ms",
                      {{std::to_string(decode_short), r.step_short_ms},
                       {std::to_string(decode_long), r.step_long_ms}}},
                     {"decode_cost_ratio", r.decode_ratio}};
  if (!decode_only) {
    doc["prefill_tokens_per_s"] = {{std::to_string(prefill_short), r.prefill_short_tps},
                                   {std::to_string(prefill_long), r.prefill_long_tps}};
    doc["prefill_cost_ratio"] = r.prefill_ratio;
  }
  std::ofstream(json_path) << doc.dump(2) << "\n";
}

// For each batch size: a prefill of `prompt` tokens per sequence and `steps` decode steps after
// it, in rounds, against the decode bound of each round (weights over the bandwidth measured just
// before it). Prints the table and returns its rows.
nlohmann::json time_batches(fixture& f, const models::device_weights& w, kernels::dtype kv_type,
                            std::span<const std::size_t> batches, std::size_t blocks_per_seq,
                            std::size_t prompt, std::size_t steps, std::size_t rounds,
                            bool profile) {
  const auto weight_bytes = static_cast<double>(f.image->bytes().size());
  fmt::print("decode steps at context {}..{}; medians of {} rounds, and the best; each round's "
             "bound from the bandwidth measured just before it\n",
             prompt, prompt + steps, rounds);
  fmt::print("{:>6} {:>14} {:>14} {:>9} {:>9} {:>9} {:>9}\n", "batch", "prefill tok/s",
             "decode tok/s", "ms/step", "best", "vs bound", "best vs");
  nlohmann::json results = nlohmann::json::array();
  const auto tokens = prompt_of(prompt, w.config->vocab_size);
  for (std::size_t batch : batches) {
    std::vector<std::vector<std::int32_t>> tables(batch);
    for (std::size_t s = 0; s < batch; ++s)
      for (std::size_t b = 0; b < blocks_per_seq; ++b)
        tables[s].push_back(static_cast<std::int32_t>(s * blocks_per_seq + b));
    std::vector<models::sequence_step> st(batch);
    auto prompts = [&] {
      for (std::size_t s = 0; s < batch; ++s)
        st[s] = {tokens, 0, tables[s], true, {}};
    };
    // Warm up once, then time the prefill and the decode steps in rounds: this machine shares
    // its cores and memory, so single timings wander; medians and bests do less.
    prompts();
    f.step(w, kv_type, st);
    std::vector<double> prefill_s, step_s, ratio;
    std::vector<std::int32_t> next(batch, 1);
    kernels::profile_cpu_ops(profile);
    for (std::size_t round = 0; round < rounds; ++round) {
      prompts();
      auto t = clock_type::now();
      f.step(w, kv_type, st);
      prefill_s.push_back(seconds_since(t));
      const double round_bound = weight_bytes / measure_bandwidth(f, 2);
      t = clock_type::now();
      for (std::size_t k = 0; k < steps; ++k) {
        for (std::size_t s = 0; s < batch; ++s)
          st[s] = {std::span(next).subspan(s, 1), prompt + k, tables[s], true, {}};
        f.step(w, kv_type, st);
        const auto picked = f.runner->sampled();
        std::copy(picked.begin(), picked.end(), next.begin());
      }
      step_s.push_back(seconds_since(t) / static_cast<double>(steps));
      ratio.push_back(step_s.back() / round_bound);
    }
    if (profile) {
      kernels::profile_cpu_ops(false);
      const double timed =
          std::accumulate(step_s.begin(), step_s.end(), 0.0) * static_cast<double>(steps) +
          std::accumulate(prefill_s.begin(), prefill_s.end(), 0.0);
      for (const auto& op : kernels::cpu_op_times())
        fmt::print("    {:>12}: {:5.1f}% of the timed work, {} calls per round\n", op.name,
                   100 * op.seconds / timed, op.calls / rounds);
    }
    const double step = median(step_s), best = *std::min_element(step_s.begin(), step_s.end());
    const double ratio_median = median(ratio),
                 ratio_best = *std::min_element(ratio.begin(), ratio.end());
    const double prefill_tps = static_cast<double>(batch * prompt) / median(prefill_s);
    const double decode_tps = static_cast<double>(batch) / step;
    fmt::print("{:>6} {:>14.0f} {:>14.1f} {:>9.3f} {:>9.3f} {:>8.2f}x {:>8.2f}x\n", batch,
               prefill_tps, decode_tps, step * 1e3, best * 1e3, ratio_median, ratio_best);
    results.push_back({{"batch", batch},
                       {"prefill_tokens_per_s", prefill_tps},
                       {"decode_tokens_per_s", decode_tps},
                       {"decode_step_ms_median", step * 1e3},
                       {"decode_step_ms_best", best * 1e3},
                       {"decode_step_vs_bound_median", ratio_median},
                       {"decode_step_vs_bound_best", ratio_best}});
  }
  return results;
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
  std::size_t layers = 0;
  app.add_option("--layers", layers,
                 "With --synthetic: keep only the first N layers (per-layer costs are the whole "
                 "model's, and a prefill's context ratio nearly so)")
      ->check(CLI::PositiveNumber);
  bool long_context = false;
  app.add_flag("--long-context", long_context,
               "Time prefill at 512 and 8128 tokens and decode from context 128 and 4096, one "
               "sequence, in alternating rounds, and print each round's cost of the long context "
               "against the short one's and their median (target: within 1.5x)");
  bool decode_only = false;
  app.add_flag("--decode-only", decode_only,
               "With --long-context on the CPU: time decode alone, over a KV filled with a pattern "
               "instead of an 8k prefill");
  bool profile = false;
  app.add_flag("--profile", profile,
               "Time every op of the decode steps (CPU) and print where the "
               "time goes");
  CLI11_PARSE(app, argc, argv);
  if (long_context && (app.count("--batches") || app.count("--prompt") || profile)) {
    fmt::print(stderr, "llama_bench: --long-context sets its own batch (1) and contexts, and "
                       "takes no --batches, --prompt or --profile\n");
    return 1;
  }
  try {
    std::vector<std::size_t> batches;
    for (std::size_t pos = 0; pos < batches_arg.size();) {
      const auto comma = batches_arg.find(',', pos);
      batches.push_back(std::stoul(batches_arg.substr(pos, comma - pos)));
      pos = comma == std::string::npos ? batches_arg.size() : comma + 1;
    }
    if (long_context) {
      batches = {1};
      prompt = decode_only ? decode_long : prefill_long; // sizes the KV and the runner
    }
    if (decode_only && (!long_context || backend != "cpu"))
      throw std::runtime_error("--decode-only goes with --long-context on the cpu backend");
    if (layers && synthetic.empty())
      throw std::runtime_error("--layers applies to --synthetic shapes only");
    const std::size_t max_batch = *std::max_element(batches.begin(), batches.end());
    // The long-context mode's sequence holds its longest prefill and the decode steps from 4096.
    const std::size_t ctx_tokens =
        long_context ? std::max(decode_only ? 0 : prefill_long, decode_long + steps)
                     : prompt + steps + 1;

    fixture f;
    f.dev =
        checked(gpu::make_device({.backend = backend,
                                  .ordinal = 0,
                                  .capacity_bytes = backend == "cpu" ? std::size_t{16} << 30 : 0}),
                "the device");
    f.stream = checked(f.dev->create_stream(), "a stream");
    f.ctx = checked(kernels::context::create(*f.stream), "the kernels' context");
    f.event = checked(f.dev->create_event(), "an event");
    auto format = models::compute_format::for_backend(f.dev->kind());
    format.half_type = half == "f16" ? kernels::dtype::f16 : kernels::dtype::bf16;
    f.image = synthetic.empty() ? load_image(model, format, *f.dev)
                                : synthetic_image(synthetic, layers, format, *f.dev);
    const auto& cfg = f.image->config();
    if (long_context && ctx_tokens > cfg.context_length)
      throw std::runtime_error(
          fmt::format("{} holds {} tokens of context; --long-context needs {} ({})", cfg.name,
                      cfg.context_length, ctx_tokens,
                      decode_only ? "decode steps from 4096"
                                  : "a prefill of 8128 tokens and decode from 4096"));
    const std::size_t weight_bytes = f.image->bytes().size();
    f.weights = checked(f.dev->allocate(weight_bytes), "device memory for the weights");
    (void)f.stream->copy(f.weights.data(), f.image->bytes().data(), weight_bytes,
                         gpu::copy_kind::host_to_device);
    const auto kv = cfg.kv(format.kv_type());
    const std::size_t blocks_per_seq = kernels::kv_geometry::blocks_for(ctx_tokens);
    f.kv = checked(f.dev->allocate(max_batch * blocks_per_seq * kv.block_bytes()),
                   "device memory for the KV cache");
    f.runner =
        checked(models::llama_runner::create(
                    *f.dev, *f.ctx, cfg, {std::max(prompt * max_batch, max_batch), max_batch, 0}),
                "the runner");
    f.wait();

    const double bandwidth = measure_bandwidth(f, 5);
    const double bound = static_cast<double>(weight_bytes) / bandwidth;
    fmt::print(
        "{} on {}: {:.1f} M parameters, {:.1f} MiB of weights; measured bandwidth {:.1f} GB/s "
        "-> decode bound {:.3f} ms/step\n",
        cfg.name, f.dev->name(), cfg.num_parameters() / 1e6, weight_bytes / 1048576.0,
        bandwidth / 1e9, bound * 1e3);
    const models::device_weights w{&cfg, &f.image->layout(), f.weights.as<std::byte>()};
    if (long_context) {
      std::vector<std::int32_t> table(blocks_per_seq);
      std::iota(table.begin(), table.end(), 0);
      const auto r = time_long_contexts(f, w, kv.type, table, steps, rounds, decode_only);
      report_long_contexts(r, cfg.name, f.dev->name(), steps, rounds, decode_only, json_path);
      return 0;
    }
    const auto results =
        time_batches(f, w, kv.type, batches, blocks_per_seq, prompt, steps, rounds, profile);
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
  } catch (const std::exception& e) {
    fmt::print(stderr, "llama_bench: {}\n", e.what());
    return 1;
  }
}
