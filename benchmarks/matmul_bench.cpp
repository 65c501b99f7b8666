// Decode-shaped matmuls on the CPU (a few activation rows against a large weight matrix) in the
// layouts the CPU loads GGUF weights into, each held against the memory-bandwidth bound measured
// in the same run (the same compute threads reading a buffer as large as the working set):
//   Q4_K → Q4_1x8   Q4_K rows transcoded to Q4_1 and interleaved (how Q4_K_M/Q4_K_S load)
//   Q5_K → Q5_1x8   Q5_K rows transcoded to Q5_1 and interleaved (how Q5_K_M/Q5_K_S load)
//   Q6_K → Q6_Kx8   Q6_K rows interleaved as they are (how Q6_K loads)
//   Q3_K → Q3_Kx8   Q3_K rows interleaved as they are (how Q3_K loads)
//   Q2_K → Q2_Kx8   Q2_K rows interleaved as they are (how Q2_K loads)
//   Q8_0 → Q8_0x8   Q8_0 rows interleaved; how the K-quants loaded before (re-quantized to
//                   Q8_0): the peer
//   F16             F16 rows as stored
// Each layout gets as many copies of the matrix as fill `--working-set-mib`, far more than the
// caches hold, and a pass multiplies every copy once: every weight byte comes from memory, as in
// a decode step. A round is one bandwidth pass then one pass per layout, so that all of them see
// the same moment of a shared machine; the table gives medians over the rounds, each layout's
// read rate divided by the bandwidth of its own round.
//
//   matmul_bench [--shapes 4096x4096,18944x3584] [--batches 1,4] [--rounds 7]
//                [--working-set-mib 512] [--json FILE]
//
// A shape is ROWSxCOLS (outputs x inputs; COLS a multiple of 256); 18944x3584 is Qwen2.5-7B's
// ffn_gate and ffn_up.

#include "benchmarks/cpu_bandwidth.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>

namespace {

using namespace aeg;
using bench::clock_type;
using bench::seconds_since;
using kernels::dtype;

// Q4_K blocks as a quantizer writes them: d and dmin near 1e-3, 6-bit scales and mins, random
// 4-bit values. The bytes do not change the time; they only need to be valid.
std::vector<kernels::block_q4_k> random_q4_k(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  std::vector<kernels::block_q4_k> out(n);
  for (auto& b : out) {
    b.d = kernels::float_to_half(1e-3f * u(rng));
    b.dmin = kernels::float_to_half(1e-3f * u(rng));
    for (auto& s : b.scales)
      s = static_cast<std::uint8_t>(rng());
    for (auto& q : b.qs)
      q = static_cast<std::uint8_t>(rng());
  }
  return out;
}

std::vector<kernels::block_q5_k> random_q5_k(std::size_t n, std::mt19937& rng) {
  const auto q4 = random_q4_k(n, rng);
  std::vector<kernels::block_q5_k> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i].d = q4[i].d;
    out[i].dmin = q4[i].dmin;
    std::memcpy(out[i].scales, q4[i].scales, sizeof q4[i].scales);
    std::memcpy(out[i].qs, q4[i].qs, sizeof q4[i].qs);
    for (auto& h : out[i].qh)
      h = static_cast<std::uint8_t>(rng());
  }
  return out;
}

std::vector<kernels::block_q6_k> random_q6_k(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  std::vector<kernels::block_q6_k> out(n);
  for (auto& b : out) {
    b.d = kernels::float_to_half(1e-4f * u(rng));
    for (auto& s : b.scales)
      s = static_cast<std::int8_t>(rng());
    for (auto& q : b.ql)
      q = static_cast<std::uint8_t>(rng());
    for (auto& q : b.qh)
      q = static_cast<std::uint8_t>(rng());
  }
  return out;
}

// One layout: the matrix in the CPU's compute type, in `copies` places.
struct layout {
  std::string name;
  dtype type;
  std::vector<std::vector<std::byte>> copies;
  // Per round: seconds per matmul, bytes/s, bytes/s over the round's bandwidth, and time over
  // Q8_0x8's in the same round.
  std::vector<double> seconds, rates, ratios, vs_q8;
};

// A [rows, cols] matrix, stored as `stored`, in the type the CPU computes it in, converted with
// the kernels the loader uses (models/llama/weights.cpp): transcoding for Q4_K and Q5_K,
// interleaving for Q6_K, Q3_K, Q2_K and Q8_0. Returns the type and the bytes.
std::pair<dtype, std::vector<std::byte>> make_matrix(dtype stored, std::size_t rows,
                                                     std::size_t cols, std::mt19937& rng) {
  const std::size_t n = rows * cols;
  std::vector<std::byte> plain;
  dtype plain_type = stored;
  if (const auto to = kernels::transcoded_type(stored)) {
    plain_type = *to;
    plain.resize(kernels::row_bytes(plain_type, n));
    const std::size_t in_row = kernels::row_bytes(stored, cols);
    std::vector<std::byte> k(kernels::row_bytes(stored, n));
    if (stored == dtype::q4_k)
      std::memcpy(k.data(), random_q4_k(n / 256, rng).data(), k.size());
    else
      std::memcpy(k.data(), random_q5_k(n / 256, rng).data(), k.size());
    for (std::size_t r = 0; r < rows; ++r)
      kernels::transcode_row(stored, k.data() + r * in_row,
                             plain.data() + r * kernels::row_bytes(plain_type, cols), cols);
  } else if (stored == dtype::q6_k) {
    const auto k = random_q6_k(n / 256, rng);
    plain.resize(kernels::row_bytes(plain_type, n));
    std::memcpy(plain.data(), k.data(), plain.size());
  } else if (stored == dtype::q3_k) { // random bytes but for d: any scale and value is valid
    plain.resize(kernels::row_bytes(plain_type, n));
    for (auto& b : plain)
      b = static_cast<std::byte>(rng());
    for (std::size_t i = 0; i < n / 256; ++i)
      reinterpret_cast<kernels::block_q3_k*>(plain.data())[i].d = kernels::float_to_half(1e-3f);
  } else if (stored == dtype::q2_k) { // likewise, but for d and dmin
    plain.resize(kernels::row_bytes(plain_type, n));
    for (auto& b : plain)
      b = static_cast<std::byte>(rng());
    for (std::size_t i = 0; i < n / 256; ++i) {
      auto& b = reinterpret_cast<kernels::block_q2_k*>(plain.data())[i];
      b.d = b.dmin = kernels::float_to_half(1e-3f);
    }
  } else {
    std::vector<float> w(n);
    std::normal_distribution<float> d(0.0f, 0.02f);
    for (auto& v : w)
      v = d(rng);
    plain.resize(kernels::row_bytes(plain_type, n));
    kernels::quantize_row(plain_type, w.data(), plain.data(), n);
  }
  const auto x8 = kernels::interleaved_type(plain_type);
  if (!x8)
    return {plain_type, std::move(plain)};
  std::vector<std::byte> out(kernels::row_bytes(*x8, n)); // Q3_Kx8 takes more than Q3_K
  kernels::interleave_rows(plain_type, plain.data(), rows, cols, out.data());
  return {*x8, std::move(out)};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

template <class T>
std::vector<T> parse_list(const std::string& text, T (*parse)(const std::string&)) {
  std::vector<T> out;
  for (std::size_t pos = 0; pos < text.size();) {
    const auto comma = text.find(',', pos);
    out.push_back(parse(text.substr(pos, comma - pos)));
    pos = comma == std::string::npos ? text.size() : comma + 1;
  }
  return out;
}

std::pair<std::size_t, std::size_t> parse_shape(const std::string& s) {
  const auto x = s.find('x');
  if (x == std::string::npos)
    throw std::invalid_argument(s);
  return {std::stoul(s.substr(0, x)), std::stoul(s.substr(x + 1))};
}

std::size_t parse_size(const std::string& s) {
  return std::stoul(s);
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Decode-shaped CPU matmuls per weight layout against the bandwidth bound"};
  std::string shapes_arg = "4096x4096,18944x3584", batches_arg = "1,4", json_path;
  std::size_t rounds = 7, working_set_mib = 512;
  app.add_option("--shapes", shapes_arg, "ROWSxCOLS, comma-separated (COLS a multiple of 256)")
      ->capture_default_str();
  app.add_option("--batches", batches_arg, "Activation rows per matmul, comma-separated")
      ->capture_default_str();
  app.add_option("--rounds", rounds, "Timed rounds; the table shows medians")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000}))
      ->capture_default_str();
  app.add_option("--working-set-mib", working_set_mib,
                 "Bytes each layout's copies fill, and the bandwidth pass reads")
      ->check(CLI::Range(std::size_t{16}, std::size_t{1} << 16))
      ->capture_default_str();
  app.add_option("--json", json_path, "Also write the results here");
  CLI11_PARSE(app, argc, argv);
  std::vector<std::pair<std::size_t, std::size_t>> shapes;
  std::vector<std::size_t> batches;
  try {
    shapes = parse_list(shapes_arg, parse_shape);
    batches = parse_list(batches_arg, parse_size);
  } catch (const std::exception&) {
    fmt::print(stderr, "matmul_bench: give --shapes as ROWSxCOLS,... and --batches as N,...\n");
    return 2;
  }
  for (const auto& [rows, cols] : shapes)
    if (rows % 8 != 0 || cols % 256 != 0 || rows == 0 || cols == 0) {
      fmt::print(stderr, "matmul_bench: rows must be a multiple of 8 and cols of 256\n");
      return 2;
    }
  if (batches.empty() || std::find(batches.begin(), batches.end(), 0u) != batches.end()) {
    fmt::print(stderr, "matmul_bench: batches must be at least 1\n");
    return 2;
  }
  const std::size_t working_set = working_set_mib << 20;
  fmt::print("{} compute threads, {} MiB per layout and for the bandwidth pass; medians of {} "
             "rounds\n",
             kernels::cpu::num_compute_threads(), working_set_mib, rounds);
  nlohmann::json results = nlohmann::json::array();
  std::mt19937 rng(1);
  for (const auto& [rows, cols] : shapes) {
    std::vector<layout> layouts;
    for (const auto& [name, stored] :
         {std::pair{"Q4_K -> Q4_1x8", dtype::q4_k}, std::pair{"Q5_K -> Q5_1x8", dtype::q5_k},
          std::pair{"Q6_K -> Q6_Kx8", dtype::q6_k}, std::pair{"Q3_K -> Q3_Kx8", dtype::q3_k},
          std::pair{"Q2_K -> Q2_Kx8", dtype::q2_k}, std::pair{"Q8_0 -> Q8_0x8", dtype::q8_0},
          std::pair{"F16", dtype::f16}}) {
      layout l{name, dtype::f16, {}, {}, {}, {}, {}};
      auto [type, m] = make_matrix(stored, rows, cols, rng);
      l.type = type;
      const std::size_t copies = std::max<std::size_t>(1, (working_set + m.size() - 1) / m.size());
      for (std::size_t c = 1; c < copies; ++c)
        l.copies.push_back(m);
      l.copies.push_back(std::move(m));
      layouts.push_back(std::move(l));
    }
    // The peer: how the K-quants loaded before.
    const layout& q8_0 = *std::find_if(layouts.begin(), layouts.end(),
                                       [](const layout& l) { return l.type == dtype::q8_0x8; });
    for (std::size_t batch : batches) {
      std::vector<float> x(batch * cols), y(batch * rows);
      {
        std::normal_distribution<float> d(0.0f, 1.0f);
        for (auto& v : x)
          v = d(rng);
      }
      std::size_t scratch_bytes = 0;
      for (const auto& l : layouts)
        scratch_bytes =
            std::max(scratch_bytes,
                     kernels::cpu::matmul_scratch_bytes({l.type, nullptr, rows, cols}, batch));
      std::vector<std::byte> scratch(std::max<std::size_t>(scratch_bytes, 1));
      auto pass = [&](layout& l) {
        const auto t = clock_type::now();
        for (const auto& c : l.copies)
          kernels::cpu::matmul({l.type, c.data(), rows, cols}, x.data(), batch, y.data(),
                               scratch.data());
        return seconds_since(t);
      };
      std::vector<double> bandwidths;
      for (auto& l : layouts) {
        l.seconds.clear();
        l.rates.clear();
        l.ratios.clear();
        l.vs_q8.clear();
      }
      for (std::size_t round = 0; round <= rounds; ++round) { // round 0 warms up
        const double bw = bench::cpu_read_bandwidth(1, working_set);
        for (auto& l : layouts) {
          const double s = pass(l);
          if (round == 0)
            continue;
          const double bytes = static_cast<double>(l.copies.size() * l.copies[0].size());
          l.rates.push_back(bytes / s);
          l.ratios.push_back(bytes / s / bw);
          l.seconds.push_back(s / static_cast<double>(l.copies.size()));
        }
        if (round == 0)
          continue;
        bandwidths.push_back(bw);
        for (auto& l : layouts)
          l.vs_q8.push_back(l.seconds.back() / q8_0.seconds.back());
      }
      const double bw = median(bandwidths);
      fmt::print("\n{} x {} weights, {} activation row{}; bandwidth {:.1f} GB/s (median; "
                 "{:.1f} to {:.1f})\n",
                 rows, cols, batch, batch == 1 ? "" : "s", bw / 1e9,
                 *std::min_element(bandwidths.begin(), bandwidths.end()) / 1e9,
                 *std::max_element(bandwidths.begin(), bandwidths.end()) / 1e9);
      fmt::print("{:<16} {:>9} {:>8} {:>11} {:>8} {:>11} {:>10}\n", "layout", "bits/w", "MiB",
                 "ms/matmul", "GB/s", "of bound", "vs Q8_0x8");
      for (const auto& l : layouts) {
        const double bytes = static_cast<double>(l.copies[0].size());
        const double s = median(l.seconds);
        fmt::print("{:<16} {:>9.2f} {:>8.1f} {:>11.3f} {:>8.1f} {:>11.2f} {:>9.2f}x\n", l.name,
                   bytes * 8 / static_cast<double>(rows * cols), bytes / (1 << 20), s * 1e3,
                   median(l.rates) / 1e9, median(l.ratios), median(l.vs_q8));
        results.push_back({{"rows", rows},
                           {"cols", cols},
                           {"batch", batch},
                           {"layout", l.name},
                           {"bytes", bytes},
                           {"ms_median", s * 1e3},
                           {"bytes_per_s_median", median(l.rates)},
                           {"fraction_of_bandwidth_median", median(l.ratios)},
                           {"time_vs_q8_0x8_median", median(l.vs_q8)},
                           {"bandwidth_bytes_per_s_median", bw}});
      }
    }
  }
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << nlohmann::json{{"results", results}}.dump(2) << "\n";
    if (!f) {
      fmt::print(stderr, "matmul_bench: could not write {}\n", json_path);
      return 1;
    }
  }
  return 0;
}
