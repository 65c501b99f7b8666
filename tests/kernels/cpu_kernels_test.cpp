#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"
#include "tests/kernels/quant_blocks.hpp"
#include "tests/support/random_values.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

namespace aeg::kernels::cpu {
namespace {

using aeg::testing::normal_floats;

TEST(Half, ConversionsRoundTripEveryHalfValue) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f))
      continue;
    ASSERT_EQ(float_to_half(f), h) << std::hex << h;
  }
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);              // rounds past the largest half: infinity
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24)); // smallest subnormal
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 1.0f / 256)), 1.0f); // ties to even
}

TEST(Dot, VectorizedEqualsPortableUpToSummationOrder) {
  const std::size_t n = 576;
  const auto w = normal_floats(n, 1), x = normal_floats(n, 2);
  std::vector<block_q8a> xq(n / 32);
  quantize_activations(x.data(), xq.data(), n);
  for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_1, dtype::q5_1, dtype::f16, dtype::f32}) {
    std::vector<std::byte> row(row_bytes(t, n));
    ASSERT_TRUE(quantize_row(t, w.data(), row.data(), n));
    const float fast = dot(t, row.data(), xq.data(), x.data(), n);
    const float ref = dot_reference(t, row.data(), xq.data(), x.data(), n);
    EXPECT_NEAR(fast, ref, 1e-4f * (1 + std::fabs(ref))) << traits(t).name;
  }
}

TEST(Dot, QuantizedDotsApproximateTheFloatDot) {
  const std::size_t n = 1536;
  const auto w = normal_floats(n, 3), x = normal_floats(n, 4);
  std::vector<block_q8a> xq(n / 32);
  quantize_activations(x.data(), xq.data(), n);
  for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_1, dtype::q5_1}) {
    std::vector<std::byte> row(row_bytes(t, n));
    ASSERT_TRUE(quantize_row(t, w.data(), row.data(), n));
    std::vector<float> wd(n);
    dequantize_row(t, row.data(), wd.data(), n);
    // Only the activations' 8-bit rounding separates the two.
    EXPECT_TRUE(
        testing::near_product(dot(t, row.data(), xq.data(), x.data(), n), wd.data(), x.data(), n))
        << traits(t).name;
  }
}

TEST(Quant, EncodersReproduceTheirInputWithinOneStep) {
  const std::size_t n = 256;
  const auto x = normal_floats(n, 5);
  for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_1, dtype::q5_1, dtype::f16, dtype::bf16}) {
    std::vector<std::byte> row(row_bytes(t, n));
    ASSERT_TRUE(quantize_row(t, x.data(), row.data(), n));
    std::vector<float> y(n);
    dequantize_row(t, row.data(), y.data(), n);
    for (std::size_t b = 0; b < n / 32; ++b) {
      float amax = 0;
      for (std::size_t i = 0; i < 32; ++i)
        amax = std::max(amax, std::fabs(x[b * 32 + i]));
      const float step = t == dtype::q8_0                      ? amax / 127
                         : t == dtype::f16 || t == dtype::bf16 ? amax / 64
                         : t == dtype::q5_1                    ? amax / 15
                                                               : amax / 7;
      for (std::size_t i = 0; i < 32; ++i)
        ASSERT_NEAR(y[b * 32 + i], x[b * 32 + i], step) << traits(t).name;
    }
  }
}

// The interleaved layouts give the same bits on every instruction set (portable, AVX2, VNNI):
// the integer sums are exact and every lane sees the same float operations.
TEST(InterleavedMatmul, IsBitIdenticalOnEveryInstructionSetAndMatchesThePlainRows) {
  const std::size_t rows_out = 64, cols = 576;
  const auto w = normal_floats(rows_out * cols, 11);
  const auto isas = testing::available_isas();
  for (dtype plain : {dtype::q4_1, dtype::q4_0, dtype::q5_1, dtype::q8_0}) {
    std::vector<std::byte> rowmajor(rows_out * row_bytes(plain, cols));
    for (std::size_t r = 0; r < rows_out; ++r)
      ASSERT_TRUE(quantize_row(plain, w.data() + r * cols,
                               rowmajor.data() + r * row_bytes(plain, cols), cols));
    const dtype x8 = *interleaved_type(plain);
    std::vector<std::byte> inter(rows_out * row_bytes(x8, cols)); // Q4_0 grows into Q4_1x8
    interleave_rows(plain, rowmajor.data(), rows_out, cols, inter.data());
    // Every row reads back as the plain row did.
    std::vector<float> a(cols), b(cols);
    for (std::size_t r = 0; r < rows_out; ++r) {
      dequantize_row(plain, rowmajor.data() + r * row_bytes(plain, cols), a.data(), cols);
      dequantize_interleaved_row(x8, inter.data(), r, cols, b.data());
      ASSERT_EQ(a, b) << traits(plain).name << " row " << r;
    }
    const matrix m{x8, inter.data(), rows_out, cols};
    const matrix ref{plain, rowmajor.data(), rows_out, cols};
    for (std::size_t rows : {1, 3, 16}) {
      const auto x = normal_floats(rows * cols, 12 + static_cast<std::uint32_t>(rows));
      std::vector<std::byte> scratch(matmul_scratch_bytes(m, rows));
      std::vector<float> expected(rows * rows_out), got(rows * rows_out), plain_y(rows * rows_out);
      matmul(m, x.data(), rows, expected.data(), scratch.data(), cpu_isa::portable);
      for (cpu_isa isa : isas) {
        matmul(m, x.data(), rows, got.data(), scratch.data(), isa);
        ASSERT_EQ(got, expected) << traits(plain).name << " isa " << static_cast<int>(isa);
      }
      // The plain layout computes the same dot products (in another float order).
      matmul(ref, x.data(), rows, plain_y.data(), scratch.data(), cpu_isa::portable);
      for (std::size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], plain_y[i], 1e-4f * (1 + std::fabs(plain_y[i])));
    }
  }
}

TEST(ParallelFor, RunsEveryItemExactlyOnceEvenFromSeveralThreadsAtOnce) {
  constexpr std::size_t n = 100000;
  std::vector<std::atomic<int>> hits(n);
  auto body = [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i)
      hits[i].fetch_add(1);
  };
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int k = 0; k < 50; ++k)
        parallel_for(n, 64, body);
    });
  for (auto& c : callers)
    c.join();
  for (std::size_t i = 0; i < n; ++i)
    ASSERT_EQ(hits[i].load(), 200);
  EXPECT_GE(num_compute_threads(), 1u);
}

TEST(Swiglu, FollowsTheFormulaOverTheWholeFloatRangeAndEachElementAloneGivesTheSameBits) {
  std::vector<float> g = {0.0f,  -0.0f,  1e-30f, -1e-30f, 1.0f,   -1.0f,   20.0f, -20.0f,
                          87.0f, -87.0f, 89.0f,  -89.0f,  100.0f, -100.0f, 1e30f, -1e30f};
  for (float x : normal_floats(1000, 11))
    g.push_back(8 * x);
  const std::size_t nan_at = 13;
  g[nan_at] = std::nanf("");
  const auto u = normal_floats(g.size(), 12);
  std::vector<float> out(g.size());
  swiglu(g.data(), u.data(), g.size(), out.data());
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (i == nan_at) {
      ASSERT_TRUE(std::isnan(out[i])) << "a NaN must not turn into a number";
      continue;
    }
    const double ref = g[i] / (1 + std::exp(-static_cast<double>(g[i]))) * u[i];
    ASSERT_TRUE(std::isfinite(out[i])) << g[i];
    // Below g = -87 the answer (under 1e-35) is only kept near zero, not to the ulp.
    ASSERT_NEAR(out[i], ref, 4e-7 * std::fabs(ref) + 1e-35) << "g = " << g[i];
    // Alone (the padded tail) or inside a long vector, at any offset: identical bits.
    float alone = 0;
    swiglu(&g[i], &u[i], 1, &alone);
    ASSERT_EQ(alone, out[i]) << "g = " << g[i];
  }
}

TEST(Rope, EachCallUsesItsOwnPositionsAndBase) {
  // Consecutive calls on one thread (as a forward pass makes them, layer after layer) with the
  // positions or the base changing in between.
  const std::size_t heads = 2, hd = 8;
  struct call {
    std::vector<std::int32_t> pos;
    float base;
  };
  const std::vector<call> calls = {{{3, 9}, 10000}, {{3, 9}, 10000}, {{3, 10}, 10000},
                                   {{3, 10}, 500},  {{7}, 500},      {{3, 10}, 500}};
  for (std::size_t k = 0; k < calls.size(); ++k) {
    const auto& c = calls[k];
    const std::size_t rows = c.pos.size();
    auto x = normal_floats(rows * heads * hd, static_cast<std::uint32_t>(20 + k));
    const auto before = x;
    rope(x.data(), rows, heads, hd, hd, c.pos.data(), c.base, nullptr);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t h = 0; h < heads; ++h)
        for (std::size_t i = 0; i < hd / 2; ++i) {
          const double theta = c.pos[r] * std::pow(double(c.base), -2.0 * i / hd);
          const std::size_t at = (r * heads + h) * hd + 2 * i;
          const double x0 = before[at], x1 = before[at + 1];
          ASSERT_NEAR(x[at], x0 * std::cos(theta) - x1 * std::sin(theta), 1e-5) << "call " << k;
          ASSERT_NEAR(x[at + 1], x0 * std::sin(theta) + x1 * std::cos(theta), 1e-5) << "call " << k;
        }
  }
}

TEST(SampleRow, DrawsTokensInProportionToTheirProbabilities) {
  // Softmax of these logits at temperature 1: masses 1, 2, 4, 8 (/15).
  const std::vector<float> logits = {0, std::log(2.0f), std::log(4.0f), std::log(8.0f)};
  std::vector<int> counts(4);
  const int draws = 15000;
  for (int i = 0; i < draws; ++i) {
    const float u = (static_cast<float>(i) + 0.5f) / draws;
    ++counts[sample_row(logits.data(), 4, {1.0f, 0, 1.0f, u})];
  }
  for (int k = 0; k < 4; ++k)
    EXPECT_NEAR(counts[k], draws * (1 << k) / 15.0, 2) << "token " << k;
}

TEST(SampleRow, TopKAndTopPKeepOnlyTheHighestTokens) {
  const std::vector<float> logits = {0, std::log(2.0f), std::log(4.0f), std::log(8.0f)};
  std::vector<int> seen(4);
  for (int i = 0; i < 1000; ++i) {
    const float u = (static_cast<float>(i) + 0.5f) / 1000;
    ++seen[sample_row(logits.data(), 4, {1.0f, 2, 1.0f, u})];  // top-2: tokens 2, 3
    ++seen[sample_row(logits.data(), 4, {1.0f, 0, 0.75f, u})]; // nucleus: 8/15 < 0.75 <= 12/15
  }
  EXPECT_EQ(seen[0], 0);
  EXPECT_EQ(seen[1], 0);
  EXPECT_NEAR(seen[2], 2 * 1000 / 3.0, 2);
  EXPECT_NEAR(seen[3], 2 * 2000 / 3.0, 2);
  EXPECT_EQ(sample_row(logits.data(), 4, {0.0f, 0, 1.0f, 0.5f}), 3);   // greedy
  EXPECT_EQ(sample_row(logits.data(), 4, {5.0f, 0, 0.01f, 0.99f}), 3); // tiny nucleus
}

TEST(SampleRow, LowTemperatureConcentratesOnTheBestToken) {
  const auto logits = normal_floats(1000, 6);
  const auto best = sample_row(logits.data(), 1000, {0.0f, 0, 1.0f, 0});
  for (float u : {0.0f, 0.5f, 0.999f})
    EXPECT_EQ(sample_row(logits.data(), 1000, {1e-4f, 0, 1.0f, u}), best);
}

} // namespace
} // namespace aeg::kernels::cpu
