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
#include <cmath>
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
  void check_paged_attention(dtype kv_type);
  std::unique_ptr<op_runner> run;
  gpu::backend_kind kind = gpu::backend_kind::cpu;
};

TEST_P(KernelConformance, MatmulMatchesAFloatReferenceForEveryComputeType) {
  const std::size_t rows = 5, cols = 256, outs = 96;
  const auto x = random_floats(rows * cols, 1);
  const auto w = random_floats(outs * cols, 2);
  for (dtype stored : {dtype::q4_1, dtype::q8_0, dtype::q4_0, dtype::f16, dtype::f32}) {
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

// Two sequences with their blocks scattered through the pool, a prefill of several tokens and a
// one-token decode, grouped heads: the result must equal plain causal attention over each
// sequence's keys laid out contiguously.
TEST_P(KernelConformance, PagedAttentionEqualsContiguousCausalAttention) {
  const auto types = kind == gpu::backend_kind::cpu ? std::vector{dtype::f32, dtype::f16}
                                                    : std::vector{dtype::f16, dtype::bf16};
  for (dtype kv_type : types)
    check_paged_attention(kv_type);
}

// The test above for one KV element type.
inline void KernelConformance::check_paged_attention(dtype kv_type) {
  const std::size_t layers = 2, layer = 1, kv_heads = 2, heads = 6, hd = 64;
  const kv_geometry g{layers, kv_heads, hd, kv_type};
  const std::size_t num_blocks = 12, max_blocks = 4;
  const std::vector<std::size_t> ctx_len = {37, 20};   // tokens in each sequence after this step
  const std::vector<std::size_t> new_tokens = {37, 1}; // a prefill and a decode
  const std::vector<std::vector<std::int32_t>> blocks = {{7, 2, 10}, {5, 0}};
  std::vector<std::int32_t> table(2 * max_blocks, -1);
  for (std::size_t s = 0; s < 2; ++s)
    std::copy(blocks[s].begin(), blocks[s].end(), table.begin() + s * max_blocks);

  const std::size_t width = kv_heads * hd;
  std::vector<std::vector<float>> keys(2), values(2); // [pos, width]
  for (std::size_t s = 0; s < 2; ++s) {
    keys[s] = random_floats(ctx_len[s] * width, 20 + s);
    values[s] = random_floats(ctx_len[s] * width, 30 + s);
  }
  // Earlier tokens of the decode sequence are already in the cache: store them in a first pass.
  auto kv = run->zeros<std::byte>(num_blocks * g.block_bytes());
  std::vector<float> ks, vs;
  std::vector<std::int32_t> slots, positions, row_seq;
  for (std::size_t s = 0; s < 2; ++s)
    for (std::size_t p = 0; p < ctx_len[s]; ++p) {
      ks.insert(ks.end(), keys[s].begin() + p * width, keys[s].begin() + (p + 1) * width);
      vs.insert(vs.end(), values[s].begin() + p * width, values[s].begin() + (p + 1) * width);
      slots.push_back(blocks[s][p / 16] * 16 + static_cast<std::int32_t>(p % 16));
      if (p >= ctx_len[s] - new_tokens[s]) {
        positions.push_back(static_cast<std::int32_t>(p));
        row_seq.push_back(static_cast<std::int32_t>(s));
      }
    }
  auto dk = run->upload(ks), dv = run->upload(vs), dslots = run->upload(slots);
  ASSERT_TRUE(kv_store(run->ctx(), g, layer, dk.as<float>(), dv.as<float>(), slots.size(),
                       dslots.as<std::int32_t>(), kv.data()));
  const std::size_t rows = positions.size();
  const auto q = random_floats(rows * heads * hd, 40);
  auto dq = run->upload(q), dpos = run->upload(positions), dseq = run->upload(row_seq),
       dtab = run->upload(table);
  auto out = run->zeros<float>(rows * heads * hd);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  ASSERT_TRUE(attention(run->ctx(), g, layer, dq.as<float>(), rows, heads, dpos.as<std::int32_t>(),
                        dseq.as<std::int32_t>(), dtab.as<std::int32_t>(), max_blocks, kv.data(),
                        scale, out.as<float>()));
  const auto y = run->download<float>(out, rows * heads * hd);

  auto round = [&](float v) {
    if (g.type == dtype::f16)
      return half_to_float(float_to_half(v));
    return g.type == dtype::bf16 ? bf16_to_float(float_to_bf16(v)) : v;
  };
  std::vector<float> ref(rows * heads * hd);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t s = row_seq[r], pos = positions[r];
    for (std::size_t h = 0; h < heads; ++h) {
      const std::size_t kvh = h / (heads / kv_heads);
      std::vector<double> sc(pos + 1);
      double mx = -1e30;
      for (std::size_t t = 0; t <= pos; ++t) {
        double d = 0;
        for (std::size_t i = 0; i < hd; ++i)
          d += q[(r * heads + h) * hd + i] * round(keys[s][t * width + kvh * hd + i]);
        sc[t] = d * scale;
        mx = std::max(mx, sc[t]);
      }
      double total = 0;
      for (auto& v : sc)
        total += (v = std::exp(v - mx));
      for (std::size_t i = 0; i < hd; ++i) {
        double acc = 0;
        for (std::size_t t = 0; t <= pos; ++t)
          acc += sc[t] * round(values[s][t * width + kvh * hd + i]);
        ref[(r * heads + h) * hd + i] = static_cast<float>(acc / total);
      }
    }
  }
  EXPECT_LT(max_relative_error(y, ref), 1e-4f) << traits(kv_type).name;
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
