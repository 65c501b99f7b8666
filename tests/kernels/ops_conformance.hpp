#pragma once

// What every backend's kernels must compute, checked on random inputs (never zeros) against a
// plain float reference written here, and, for a non-CPU backend, against the CPU twin run on
// the same inputs. Instantiated for "cpu" in tests/kernels and for "cuda" in tests/gpu_device.

#include "kernels/cpu/ops.hpp"
#include "kernels/half.hpp"
#include "kernels/ops.hpp"
#include "kernels/quant.hpp"
#include "tests/support/op_runner.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace aeg::kernels::testing {

using aeg::testing::op_runner;

inline std::vector<float> random_floats(std::size_t n, std::uint32_t seed, float lo = -1,
                                        float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v)
    x = u(rng);
  return v;
}

/// Largest |a - b| relative to the largest |b|.
inline float max_relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  float err = 0, scale = 1e-20f;
  for (std::size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return err / scale;
}

/// The weight type a backend computes in for a matrix stored as `stored`.
inline dtype compute_type(gpu::backend_kind kind, dtype stored) {
  if (kind == gpu::backend_kind::cpu)
    return stored;
  return dtype::f16;
}

/// Encodes float rows as `t` ([rows, cols]).
inline std::vector<std::byte> encode(dtype t, const std::vector<float>& v, std::size_t rows,
                                     std::size_t cols) {
  std::vector<std::byte> out(rows * row_bytes(t, cols));
  for (std::size_t r = 0; r < rows; ++r)
    EXPECT_TRUE(quantize_row(t, v.data() + r * cols, out.data() + r * row_bytes(t, cols), cols));
  return out;
}

/// Decodes rows of type `t` back to floats.
inline std::vector<float> decode(dtype t, const std::vector<std::byte>& bytes, std::size_t rows,
                                 std::size_t cols) {
  std::vector<float> out(rows * cols);
  for (std::size_t r = 0; r < rows; ++r)
    dequantize_row(t, bytes.data() + r * row_bytes(t, cols), out.data() + r * cols, cols);
  return out;
}

class KernelConformance : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    auto r = op_runner::make(GetParam());
    if (!r) {
      if (r.error().code == errc::unavailable)
        GTEST_SKIP() << r.error().to_string();
      FAIL() << r.error().to_string();
    }
    run = std::move(*r);
    kind = run->ctx().kind();
  }
  std::unique_ptr<op_runner> run;
  gpu::backend_kind kind = gpu::backend_kind::cpu;
};

TEST_P(KernelConformance, MatmulMatchesAFloatReferenceForEveryComputeType) {
  const std::size_t rows = 5, cols = 256, outs = 96;
  const auto x = random_floats(rows * cols, 1);
  const auto w = random_floats(outs * cols, 2);
  for (dtype stored :
       {dtype::q4_1, dtype::q8_0, dtype::q4_0, dtype::q5_1, dtype::f16, dtype::f32}) {
    const dtype t = compute_type(kind, stored);
    // The reference multiplies by exactly the weights the device holds.
    const auto wbytes = encode(t, w, outs, cols);
    const auto wref = decode(t, wbytes, outs, cols);
    std::vector<float> ref(rows * outs);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < outs; ++j) {
        double s = 0;
        for (std::size_t k = 0; k < cols; ++k)
          s += static_cast<double>(x[r * cols + k]) * wref[j * cols + k];
        ref[r * outs + j] = static_cast<float>(s);
      }
    auto dw = run->upload_bytes(wbytes.data(), wbytes.size(), wbytes.size());
    auto dx = run->upload(x);
    auto dy = run->zeros<float>(rows * outs);
    const matrix m{t, dw.data(), outs, cols};
    auto scratch =
        run->zeros<std::byte>(std::max<std::size_t>(1, matmul_scratch_bytes(kind, m, rows)));
    ASSERT_TRUE(matmul(run->ctx(), m, dx.as<float>(), rows, dy.as<float>(), scratch.data()));
    const auto y = run->download<float>(dy, rows * outs);
    // Activations are quantized to 8 bits (CPU) or rounded to half precision (CUDA).
    EXPECT_LT(max_relative_error(y, ref), 0.02f) << traits(stored).name;
  }
}

TEST_P(KernelConformance, MatmulRowsDoNotDependOnTheRestOfTheBatch) {
  if (kind != gpu::backend_kind::cpu)
    GTEST_SKIP() << "bit-exact batch independence is a CPU guarantee";
  const std::size_t rows = 16, cols = 576, outs = 64;
  const auto x = random_floats(rows * cols, 3);
  const auto w = encode(dtype::q4_1, random_floats(outs * cols, 4), outs, cols);
  auto dw = run->upload_bytes(w.data(), w.size(), w.size());
  const matrix m{dtype::q4_1, dw.data(), outs, cols};
  auto dx = run->upload(x);
  auto all = run->zeros<float>(rows * outs);
  auto one = run->zeros<float>(outs);
  auto scratch = run->zeros<std::byte>(matmul_scratch_bytes(kind, m, rows));
  ASSERT_TRUE(matmul(run->ctx(), m, dx.as<float>(), rows, all.as<float>(), scratch.data()));
  const auto batched = run->download<float>(all, rows * outs);
  for (std::size_t r = 0; r < rows; ++r) {
    ASSERT_TRUE(
        matmul(run->ctx(), m, dx.as<float>() + r * cols, 1, one.as<float>(), scratch.data()));
    const auto alone = run->download<float>(one, outs);
    for (std::size_t j = 0; j < outs; ++j)
      ASSERT_EQ(alone[j], batched[r * outs + j]) << "row " << r << " output " << j;
  }
}

TEST_P(KernelConformance, EmbedReadsRowsOfTheTable) {
  const std::size_t vocab = 50, dim = 64;
  const auto table = random_floats(vocab * dim, 5);
  const dtype t = kind == gpu::backend_kind::cpu ? dtype::q8_0 : dtype::f16;
  const auto bytes = encode(t, table, vocab, dim);
  const auto ref_table = decode(t, bytes, vocab, dim);
  const std::vector<std::int32_t> tokens = {3, 49, 0, 3, 17};
  auto dt = run->upload_bytes(bytes.data(), bytes.size(), bytes.size());
  auto dtok = run->upload(tokens);
  auto out = run->zeros<float>(tokens.size() * dim);
  ASSERT_TRUE(embed(run->ctx(), matrix{t, dt.data(), vocab, dim}, dtok.as<std::int32_t>(),
                    tokens.size(), out.as<float>()));
  const auto y = run->download<float>(out, tokens.size() * dim);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    for (std::size_t c = 0; c < dim; ++c)
      ASSERT_EQ(y[i * dim + c], ref_table[tokens[i] * dim + c]);
}

TEST_P(KernelConformance, RmsnormScalesEachRowToUnitRootMeanSquare) {
  const std::size_t rows = 3, dim = 576;
  const auto x = random_floats(rows * dim, 6, -3, 3);
  const auto w = random_floats(dim, 7, 0.5f, 1.5f);
  auto dx = run->upload(x);
  auto dw = run->upload(w);
  auto out = run->zeros<float>(rows * dim);
  ASSERT_TRUE(
      rmsnorm(run->ctx(), dx.as<float>(), dw.as<float>(), rows, dim, 1e-5f, out.as<float>()));
  const auto y = run->download<float>(out, rows * dim);
  std::vector<float> ref(rows * dim);
  for (std::size_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (std::size_t i = 0; i < dim; ++i)
      ss += x[r * dim + i] * x[r * dim + i];
    const double scale = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (std::size_t i = 0; i < dim; ++i)
      ref[r * dim + i] = static_cast<float>(x[r * dim + i] * scale * w[i]);
  }
  EXPECT_LT(max_relative_error(y, ref), 1e-5f);
}

TEST_P(KernelConformance, RopeRotatesAdjacentPairsByPositionTimesFrequency) {
  const std::size_t rows = 4, heads = 3, hd = 64, n_rot = 64;
  const float base = 100000.0f;
  const auto x = random_floats(rows * heads * hd, 8);
  const std::vector<std::int32_t> pos = {0, 1, 77, 4095};
  auto dx = run->upload(x);
  auto dp = run->upload(pos);
  ASSERT_TRUE(
      rope(run->ctx(), dx.as<float>(), rows, heads, hd, n_rot, dp.as<std::int32_t>(), base));
  const auto y = run->download<float>(dx, x.size());
  std::vector<float> ref = x;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t h = 0; h < heads; ++h)
      for (std::size_t i = 0; i < n_rot / 2; ++i) {
        const double theta = pos[r] * std::pow(double(base), -2.0 * i / n_rot);
        float* v = ref.data() + (r * heads + h) * hd + 2 * i;
        const double x0 = v[0], x1 = v[1];
        v[0] = static_cast<float>(x0 * std::cos(theta) - x1 * std::sin(theta));
        v[1] = static_cast<float>(x0 * std::sin(theta) + x1 * std::cos(theta));
      }
  // Position 4095 needs float angles accurate to ~1e-4 rad on the GPU's sincosf.
  EXPECT_LT(max_relative_error(y, ref), 2e-3f);
  for (std::size_t i = 0; i < heads * hd; ++i) // position 0 is the identity
    EXPECT_FLOAT_EQ(y[i], x[i]);
}

TEST_P(KernelConformance, RopeDividesEachPairsFrequencyByItsFactor) {
  const std::size_t rows = 3, heads = 2, hd = 32, n_rot = 32;
  const float base = 500000.0f;
  const auto x = random_floats(rows * heads * hd, 21);
  const auto factors = random_floats(n_rot / 2, 22, 1.0f, 8.0f);
  const std::vector<std::int32_t> pos = {1, 300, 2047};
  auto dx = run->upload(x);
  auto dp = run->upload(pos);
  auto df = run->upload(factors);
  ASSERT_TRUE(rope(run->ctx(), dx.as<float>(), rows, heads, hd, n_rot, dp.as<std::int32_t>(), base,
                   df.as<float>()));
  const auto y = run->download<float>(dx, x.size());
  std::vector<float> ref = x;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t h = 0; h < heads; ++h)
      for (std::size_t i = 0; i < n_rot / 2; ++i) {
        const double theta = pos[r] * std::pow(double(base), -2.0 * i / n_rot) / factors[i];
        float* v = ref.data() + (r * heads + h) * hd + 2 * i;
        const double x0 = v[0], x1 = v[1];
        v[0] = static_cast<float>(x0 * std::cos(theta) - x1 * std::sin(theta));
        v[1] = static_cast<float>(x0 * std::sin(theta) + x1 * std::cos(theta));
      }
  EXPECT_LT(max_relative_error(y, ref), 2e-3f);
}

TEST_P(KernelConformance, AddBiasAddsTheVectorToEveryRow) {
  const std::size_t rows = 5, width = 96;
  const auto x = random_floats(rows * width, 23), b = random_floats(width, 24);
  auto dx = run->upload(x), db = run->upload(b);
  ASSERT_TRUE(add_bias(run->ctx(), dx.as<float>(), db.as<float>(), rows, width));
  const auto y = run->download<float>(dx, x.size());
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t i = 0; i < width; ++i)
      ASSERT_FLOAT_EQ(y[r * width + i], x[r * width + i] + b[i]) << r << "," << i;
}

TEST_P(KernelConformance, SwigluAddAndGatherAreElementwise) {
  const std::size_t n = 1000;
  const auto g = random_floats(n, 9, -4, 4), u = random_floats(n, 10);
  auto dg = run->upload(g), du = run->upload(u);
  auto out = run->zeros<float>(n);
  ASSERT_TRUE(swiglu(run->ctx(), dg.as<float>(), du.as<float>(), n, out.as<float>()));
  ASSERT_TRUE(add(run->ctx(), out.as<float>(), du.as<float>(), n));
  const std::vector<std::int32_t> rows = {9, 0, 4};
  auto dr = run->upload(rows);
  auto gathered = run->zeros<float>(3 * 100);
  ASSERT_TRUE(gather_rows(run->ctx(), out.as<float>(), dr.as<std::int32_t>(), 3, 100,
                          gathered.as<float>()));
  const auto y = run->download<float>(out, n);
  const auto z = run->download<float>(gathered, 300);
  for (std::size_t i = 0; i < n; ++i)
    ASSERT_NEAR(y[i], g[i] / (1 + std::exp(-g[i])) * u[i] + u[i], 1e-5f);
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t c = 0; c < 100; ++c)
      ASSERT_EQ(z[i * 100 + c], y[rows[i] * 100 + c]);
}

/// Sequences in a paged KV cache and the query rows of one attention step over them.
struct paged_attention_case {
  std::size_t kv_heads = 2, heads = 6, hd = 64;
  std::vector<std::size_t> ctx_len;    ///< tokens in each sequence after this step
  std::vector<std::size_t> new_tokens; ///< the step's rows of each sequence (its last tokens)
};

/// What attention is told of a step's shape on the host: nothing, the truth, or too little (a
/// longest context an eighth of the true one, and a sequence per row).
enum class hint_kind { none, exact, undercounted };

/// The case laid out on a device: keys and values stored through kv_store in blocks scattered
/// over the cache, queries, and the tables attention reads.
struct paged_attention_setup {
  kv_geometry g;
  std::size_t max_blocks = 0, rows = 0;
  std::vector<std::vector<float>> keys, values; // [sequence][pos, kv width]
  std::vector<std::int32_t> table, positions, row_seq;
  std::vector<float> q;
  gpu::buffer kv;
  std::vector<gpu::buffer> stored; // what kv_store reads, kept while the stream may run it

  paged_attention_setup(op_runner& run, dtype kv_type, const paged_attention_case& c)
      : g{2, c.kv_heads, c.hd, kv_type} {
    const std::size_t layer = 1, width = c.kv_heads * c.hd, seqs = c.ctx_len.size();
    std::size_t num_blocks = 0;
    for (auto n : c.ctx_len) {
      max_blocks = std::max(max_blocks, kv_geometry::blocks_for(n));
      num_blocks += kv_geometry::blocks_for(n);
    }
    // Blocks handed out in a shuffled order, as a pool that has been in use would.
    std::vector<std::int32_t> free(num_blocks + 3);
    std::iota(free.begin(), free.end(), 0);
    std::shuffle(free.begin(), free.end(), std::mt19937(7));
    table.assign(seqs * max_blocks, -1);
    std::size_t next = 0;
    for (std::size_t s = 0; s < seqs; ++s)
      for (std::size_t b = 0; b < kv_geometry::blocks_for(c.ctx_len[s]); ++b)
        table[s * max_blocks + b] = free[next++];
    std::vector<float> ks, vs;
    std::vector<std::int32_t> slots;
    for (std::size_t s = 0; s < seqs; ++s) {
      keys.push_back(random_floats(c.ctx_len[s] * width, 20 + s));
      values.push_back(random_floats(c.ctx_len[s] * width, 30 + s));
      for (std::size_t p = 0; p < c.ctx_len[s]; ++p) {
        ks.insert(ks.end(), keys[s].begin() + p * width, keys[s].begin() + (p + 1) * width);
        vs.insert(vs.end(), values[s].begin() + p * width, values[s].begin() + (p + 1) * width);
        slots.push_back(table[s * max_blocks + p / 16] * 16 + static_cast<std::int32_t>(p % 16));
        if (p >= c.ctx_len[s] - c.new_tokens[s]) {
          positions.push_back(static_cast<std::int32_t>(p));
          row_seq.push_back(static_cast<std::int32_t>(s));
        }
      }
    }
    // Every slot no key is stored in holds NaN bits: a kernel must skip masked slots, not weigh
    // them by zero.
    kv = run.upload(std::vector<std::byte>(free.size() * g.block_bytes(), std::byte{0xff}));
    stored.push_back(run.upload(ks)); // live until the stream has run kv_store
    stored.push_back(run.upload(vs));
    stored.push_back(run.upload(slots));
    auto &dk = stored[0], &dv = stored[1], &dslots = stored[2];
    EXPECT_TRUE(kv_store(run.ctx(), g, layer, dk.as<float>(), dv.as<float>(), slots.size(),
                         dslots.as<std::int32_t>(), kv.data()));
    rows = positions.size();
    // Scaled so that the softmax is far from uniform: errors in weighting show.
    q = random_floats(rows * c.heads * c.hd, 40, -4, 4);
  }

  /// Attention of layer 1 for `n` rows from `first` (all by default) on the device, told the
  /// step's shape as `hinted` says.
  std::vector<float> attend(op_runner& run, std::size_t heads, std::size_t first = 0,
                            std::size_t n = SIZE_MAX, hint_kind hinted = hint_kind::none) {
    n = std::min(n, rows - first);
    const std::vector<float> qs(q.begin() + first * heads * g.head_dim,
                                q.begin() + (first + n) * heads * g.head_dim);
    const std::vector<std::int32_t> pos(positions.begin() + first, positions.begin() + first + n),
        seq(row_seq.begin() + first, row_seq.begin() + first + n);
    auto dq = run.upload(qs), dpos = run.upload(pos), dseq = run.upload(seq),
         dtab = run.upload(table);
    auto out = run.zeros<float>(n * heads * g.head_dim);
    const float scale = 1.0f / std::sqrt(static_cast<float>(g.head_dim));
    attention_hint hint;
    if (hinted != hint_kind::none && n > 0) {
      hint.longest = static_cast<std::size_t>(*std::max_element(pos.begin(), pos.end())) + 1;
      hint.sequences = static_cast<std::size_t>(seq.back() - seq.front()) + 1;
      if (hinted == hint_kind::undercounted)
        hint = {std::max<std::size_t>(1, hint.longest / 8), n};
    }
    EXPECT_TRUE(attention(run.ctx(), g, 1, dq.as<float>(), n, heads, dpos.as<std::int32_t>(),
                          dseq.as<std::int32_t>(), dtab.as<std::int32_t>(), max_blocks, kv.data(),
                          scale, out.as<float>(), hint));
    return run.download<float>(out, n * heads * g.head_dim);
  }

  /// Plain causal attention over each sequence's keys laid out contiguously, in double.
  std::vector<float> reference(std::size_t heads) const {
    const std::size_t hd = g.head_dim, width = g.kv_heads * hd;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    auto round = [&](float v) {
      if (g.type == dtype::f16)
        return half_to_float(float_to_half(v));
      return g.type == dtype::bf16 ? bf16_to_float(float_to_bf16(v)) : v;
    };
    std::vector<float> ref(rows * heads * hd);
    for (std::size_t r = 0; r < rows; ++r) {
      const std::size_t s = row_seq[r], pos = positions[r];
      for (std::size_t h = 0; h < heads; ++h) {
        const std::size_t kvh = h / (heads / g.kv_heads);
        const float* qr = q.data() + (r * heads + h) * hd;
        std::vector<double> sc(pos + 1);
        double mx = -1e30;
        for (std::size_t t = 0; t <= pos; ++t) {
          double d = 0;
          for (std::size_t i = 0; i < hd; ++i)
            d += qr[i] * static_cast<double>(round(keys[s][t * width + kvh * hd + i]));
          sc[t] = d * scale;
          mx = std::max(mx, sc[t]);
        }
        double total = 0;
        for (auto& v : sc)
          total += (v = std::exp(v - mx));
        std::vector<double> acc(hd);
        for (std::size_t t = 0; t <= pos; ++t)
          for (std::size_t i = 0; i < hd; ++i)
            acc[i] += sc[t] * round(values[s][t * width + kvh * hd + i]);
        for (std::size_t i = 0; i < hd; ++i)
          ref[(r * heads + h) * hd + i] = static_cast<float>(acc[i] / total);
      }
    }
    return ref;
  }
};

/// Shapes the attention kernels must get right: a prefill and a one-token decode in one batch;
/// contexts past a thousand tokens (the CPU kernel cuts keys into chunks of 512 and merges
/// them; the CUDA kernel splits the keys of few rows across blocks and merges the splits);
/// grouped heads and plain multi-head, groups larger than a tile of queries; a tile whose rows
/// belong to several sequences; head sizes that are and are not multiples of 64; a step of many
/// decoding rows (the CPU then gives each row's KV heads one work item, one row alone gets one
/// per head).
inline std::vector<paged_attention_case> attention_cases() {
  return {{2, 6, 64, {37, 20}, {37, 1}},
          {2, 6, 64, {600, 1100}, {600, 1}},
          {4, 4, 80, {45, 530, 17}, {5, 1, 17}},
          {1, 8, 128, {1040}, {3}},
          {1, 16, 64, {700}, {700}},
          {1, 32, 64, {40, 9}, {40, 9}},
          {1, 24, 64, {30}, {30}},
          {2, 6, 64, {40, 300, 9, 120, 33, 77, 1040, 5}, {1, 1, 1, 1, 1, 1, 1, 1}}};
}

// Keys stored through kv_store into scattered blocks, queries from several sequences at once:
// the result must equal plain causal attention over each sequence's keys laid out contiguously.
// On a GPU, with and without the host's hint of the step's shape, and with a wrong one: it
// changes how the work is divided (rows per tile, key splits), never the result.
TEST_P(KernelConformance, PagedAttentionEqualsContiguousCausalAttention) {
  const bool cpu = kind == gpu::backend_kind::cpu;
  const auto types =
      cpu ? std::vector{dtype::f32, dtype::f16} : std::vector{dtype::f32, dtype::f16, dtype::bf16};
  for (dtype kv_type : types)
    for (const auto& c : attention_cases()) {
      paged_attention_setup setup(*run, kv_type, c);
      const auto reference = setup.reference(c.heads);
      for (auto hinted :
           cpu ? std::vector{hint_kind::none}
               : std::vector{hint_kind::none, hint_kind::exact, hint_kind::undercounted})
        EXPECT_LT(max_relative_error(setup.attend(*run, c.heads, 0, SIZE_MAX, hinted), reference),
                  1e-4f)
            << traits(kv_type).name << ", contexts " << c.ctx_len[0] << "..., head dim " << c.hd
            << ", hint " << static_cast<int>(hinted);
    }
}

// A sequence's rows give the same bits whether the step holds them alone or beside others.
TEST_P(KernelConformance, AttentionRowsDoNotDependOnTheRestOfTheBatch) {
  if (kind != gpu::backend_kind::cpu)
    GTEST_SKIP() << "bit-exact batch independence is a CPU guarantee";
  for (dtype kv_type : {dtype::f32, dtype::f16})
    for (const auto& c : attention_cases()) {
      paged_attention_setup setup(*run, kv_type, c);
      const auto together = setup.attend(*run, c.heads);
      const std::size_t per_row = c.heads * c.hd;
      for (std::size_t first = 0, s = 0; s < c.ctx_len.size(); first += c.new_tokens[s++]) {
        const auto alone = setup.attend(*run, c.heads, first, c.new_tokens[s]);
        for (std::size_t i = 0; i < alone.size(); ++i)
          ASSERT_EQ(std::bit_cast<std::uint32_t>(alone[i]),
                    std::bit_cast<std::uint32_t>(together[first * per_row + i]))
              << "sequence " << s << ", value " << i;
      }
    }
}

TEST_P(KernelConformance, SamplingFollowsTheSharedRule) {
  const std::size_t vocab = 3000;
  auto logits = random_floats(vocab, 50, -5, 5);
  logits[123] = 9; // a clear favourite
  logits[2000] = 7;
  logits[2001] = 7; // equal logits: the lower index ranks first
  std::vector<float> rows_logits;
  std::vector<sampling_row> params;
  for (float t : {0.0f, 0.7f, 1.0f, 1.5f})
    for (int k : {0, 1, 2, 3, 40})
      for (float p : {1.0f, 0.9f, 0.5f, 0.05f})
        for (float u : {0.0f, 0.3f, 0.999f}) {
          rows_logits.insert(rows_logits.end(), logits.begin(), logits.end());
          params.push_back({t, k, p, u});
        }
  const std::size_t rows = params.size();
  auto dl = run->upload(rows_logits);
  auto dp = run->upload_bytes(params.data(), params.size() * sizeof(sampling_row),
                              params.size() * sizeof(sampling_row));
  auto out = run->zeros<std::int32_t>(rows);
  ASSERT_TRUE(sample(run->ctx(), dl.as<float>(), rows, vocab,
                     static_cast<const sampling_row*>(dp.data()), out.as<std::int32_t>()));
  const auto got = run->download<std::int32_t>(out, rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const auto& p = params[r];
    const auto expected = cpu::sample_row(logits.data(), vocab, p);
    EXPECT_EQ(got[r], expected) << "temperature " << p.temperature << " top_k " << p.top_k
                                << " top_p " << p.top_p << " u " << p.u;
    if (p.temperature == 0 || p.top_k == 1)
      EXPECT_EQ(got[r], 123);
    if (p.top_k == 2 || p.top_k == 3)
      EXPECT_TRUE(got[r] == 123 || got[r] == 2000 || (p.top_k == 3 && got[r] == 2001));
  }
}

} // namespace aeg::kernels::testing
