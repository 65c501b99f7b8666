// The CPU attention kernel alone, over growing contexts, against the time it takes to read the
// KV it must read (the memory-bandwidth bound, measured in the same run), and each context
// against the shortest:
//   decode   one query row at position C-1 in every layer: a decode step's attention, each KV
//            block of the sequence read once from memory;
//   prefill  all C rows of a C-token prompt in one call, one layer (the attention share of
//            reading it; compute-bound).
//
//   attention_bench [--contexts 128,512,1024,2048,4096,8192] [--heads 9] [--kv-heads 3]
//                   [--head-dim 64] [--layers 30] [--kv f16|f32] [--rounds 5] [--json FILE]
//
// The defaults are SmolLM2-135M's attention shape; the KV blocks hold every layer, as the
// cache does, so one layer's K and V of a block are 2 of 2·layers runs inside it.

#include "benchmarks/cpu_bandwidth.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/half.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <random>

namespace {

using namespace aeg;
using bench::clock_type;
using bench::seconds_since;

struct timing {
  double median = 0, best = 0;
};

template <class F>
timing time_rounds(std::size_t rounds, F&& run) {
  run(); // warm the caches and the helpers
  std::vector<double> s;
  for (std::size_t r = 0; r < rounds; ++r) {
    const auto t = clock_type::now();
    run();
    s.push_back(seconds_since(t));
  }
  if (s.empty())
    return {1, 1};
  std::sort(s.begin(), s.end());
  return {s[s.size() / 2], s.front()};
}

std::vector<std::size_t> parse_list(const std::string& text) {
  std::vector<std::size_t> out;
  for (std::size_t pos = 0; pos < text.size();) {
    const auto comma = text.find(',', pos);
    out.push_back(std::stoul(text.substr(pos, comma - pos)));
    pos = comma == std::string::npos ? text.size() : comma + 1;
  }
  return out;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"CPU attention over growing contexts against the KV-read bound"};
  std::string contexts_arg = "128,512,1024,2048,4096,8192", kv_arg = "f16", json_path;
  std::size_t heads = 9, kv_heads = 3, head_dim = 64, layers = 30, rounds = 5;
  app.add_option("--contexts", contexts_arg, "Context lengths, comma-separated, shortest first")
      ->capture_default_str();
  app.add_option("--heads", heads, "Query heads")->capture_default_str();
  app.add_option("--kv-heads", kv_heads, "KV heads (heads must be a multiple)")
      ->capture_default_str();
  app.add_option("--head-dim", head_dim, "Dimensions per head")->capture_default_str();
  app.add_option("--layers", layers, "Layers a KV block holds")->capture_default_str();
  app.add_option("--kv", kv_arg, "KV element type")
      ->check(CLI::IsMember({"f16", "f32"}))
      ->capture_default_str();
  app.add_option("--rounds", rounds, "Timed rounds; the table shows the median and the best")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000}))
      ->capture_default_str();
  app.add_option("--json", json_path, "Also write the results here");
  bool decode_only = false;
  app.add_flag("--decode-only", decode_only, "Time decode alone (for profiling it)");
  CLI11_PARSE(app, argc, argv);
  std::vector<std::size_t> contexts;
  try {
    contexts = parse_list(contexts_arg);
  } catch (const std::exception&) {
    fmt::print(stderr, "attention_bench: --contexts: give whole numbers, comma-separated\n");
    return 2;
  }
  if (contexts.empty() || std::find(contexts.begin(), contexts.end(), 0u) != contexts.end() ||
      kv_heads == 0 || heads % kv_heads != 0 || head_dim == 0 || layers == 0) {
    fmt::print(stderr, "attention_bench: contexts must be at least 1, and heads a multiple of "
                       "kv-heads, both at least 1\n");
    return 2;
  }
  const kernels::kv_geometry g{layers, kv_heads, head_dim,
                               kv_arg == "f16" ? kernels::dtype::f16 : kernels::dtype::f32};
  const std::size_t longest = *std::max_element(contexts.begin(), contexts.end());
  const std::size_t blocks = kernels::kv_geometry::blocks_for(longest);
  // Random K and V in every block (the layer timed is the middle one), blocks in shuffled order.
  std::vector<std::byte> kv(blocks * g.block_bytes());
  {
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0, 1);
    for (std::size_t i = 0; i + 1 < kv.size(); i += 2) {
      const std::uint16_t h = kernels::float_to_half(d(rng));
      std::memcpy(kv.data() + i, &h, 2);
    }
    if (g.type == kernels::dtype::f32)
      for (std::size_t i = 0; i + 3 < kv.size(); i += 4) {
        const float f = d(rng);
        std::memcpy(kv.data() + i, &f, 4);
      }
  }
  std::vector<std::int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(2));
  const std::size_t layer = layers / 2;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  std::vector<float> q(longest * heads * head_dim), out(q.size());
  {
    std::mt19937 rng(3);
    std::normal_distribution<float> d(0, 1);
    for (auto& x : q)
      x = d(rng);
  }
  const double bandwidth = bench::cpu_read_bandwidth(5);
  fmt::print("attention of {} heads over {} KV heads of {} dims, {} KV; {} compute threads; "
             "measured bandwidth {:.1f} GB/s\n",
             heads, kv_heads, head_dim, kv_arg, kernels::cpu::num_compute_threads(),
             bandwidth / 1e9);
  fmt::print("decode: one row at the end of the context, every layer (a step's attention); "
             "prefill: every row of a prompt that long in one call, one layer. Medians of {} "
             "rounds\n",
             rounds);
  fmt::print("{:>8} {:>12} {:>10} {:>14} {:>16} {:>14}\n", "context", "decode ms", "vs bound",
             "decode vs 1st", "prefill tok/s", "prefill vs 1st");
  nlohmann::json results = nlohmann::json::array();
  double first_decode = 0, first_prefill = 0;
  for (std::size_t c : contexts) {
    std::vector<std::int32_t> positions(c), row_seq(c, 0);
    std::iota(positions.begin(), positions.end(), 0);
    const std::int32_t last = static_cast<std::int32_t>(c - 1);
    // Every layer, as a decode step does: the KV read comes from memory, not from a cache
    // that the previous round left warm.
    const auto decode = time_rounds(rounds, [&] {
      for (std::size_t l = 0; l < layers; ++l)
        kernels::cpu::attention(g, l, q.data(), 1, heads, &last, row_seq.data(), table.data(),
                                blocks, kv.data(), scale, out.data());
    });
    const auto prefill = time_rounds(decode_only ? 0 : std::max<std::size_t>(1, rounds / 2), [&] {
      if (decode_only)
        return;
      kernels::cpu::attention(g, layer, q.data(), c, heads, positions.data(), row_seq.data(),
                              table.data(), blocks, kv.data(), scale, out.data());
    });
    const double kv_bytes = static_cast<double>(layers * c * 2 * g.token_bytes());
    const double bound = kv_bytes / bandwidth;
    const double prefill_tps = static_cast<double>(c) / prefill.median;
    if (first_decode == 0) {
      first_decode = decode.median;
      first_prefill = prefill_tps;
    }
    fmt::print("{:>8} {:>12.3f} {:>9.2f}x {:>13.2f}x {:>16.0f} {:>13.2f}x\n", c,
               decode.median * 1e3, decode.median / bound, decode.median / first_decode,
               prefill_tps, first_prefill / prefill_tps);
    results.push_back({{"context", c},
                       {"decode_step_ms_median", decode.median * 1e3},
                       {"decode_step_ms_best", decode.best * 1e3},
                       {"decode_vs_bound", decode.median / bound},
                       {"prefill_tokens_per_s", prefill_tps}});
  }
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << nlohmann::json{{"heads", heads},
                        {"kv_heads", kv_heads},
                        {"head_dim", head_dim},
                        {"kv", kv_arg},
                        {"bandwidth_bytes_per_s", bandwidth},
                        {"results", results}}
             .dump(2)
      << "\n";
    if (!f) {
      fmt::print(stderr, "attention_bench: could not write {}\n", json_path);
      return 1;
    }
  }
  return 0;
}
