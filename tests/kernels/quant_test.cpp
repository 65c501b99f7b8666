#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"
#include "tests/kernels/quant_blocks.hpp"
#include "tests/support/random_values.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <span>
#include <vector>

namespace aeg::kernels {
namespace {

using namespace testing;

// Sub-block j's scale and min, read back from the 12 bytes.
std::pair<int, int> scale_min(const std::uint8_t* s, int j) {
  if (j < 4)
    return {s[j] & 63, s[j + 4] & 63};
  return {(s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)};
}

// Blocks whose d·sc and dmin·m fit f16 (power-of-two d and dmin, 6-bit sc and m) lose nothing:
// what remains to differ is where each 4-bit value and each scale went.
TEST(QuantTranscode, Q4KBlocksWhoseScalesFitF16BecomeQ4_1BitForBit) {
  std::mt19937 rng(1);
  auto blocks = typical_blocks(64, 2);
  for (auto& b : blocks) {
    b.d = float_to_half(std::ldexp(1.0f, -static_cast<int>(4 + rng() % 8)));
    b.dmin = float_to_half(std::ldexp(1.0f, -static_cast<int>(4 + rng() % 8)));
  }
  const std::size_t n = blocks.size() * 256;
  const auto q41 = transcoded(blocks);
  EXPECT_EQ(dequantized(dtype::q4_1, q41.data(), n), dequantized(dtype::q4_k, blocks.data(), n));
}

// `n` K-quant blocks of random bytes, their d and dmin of either sign from 2^-24 (subnormal)
// to 2^4, sometimes zero: every block a reader might meet.
template <class Block>
std::vector<Block> random_k_blocks(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Block> blocks(n);
  for (auto& b : blocks) {
    std::uint8_t bytes[sizeof(Block)];
    for (auto& x : bytes)
      x = static_cast<std::uint8_t>(rng());
    std::memcpy(&b, bytes, sizeof b);
    auto scale = [&] {
      if (rng() % 16 == 0)
        return float_to_half(0.0f);
      const float mag = std::ldexp(1.0f + static_cast<float>(rng() % 1024) / 1024.0f,
                                   -static_cast<int>(rng() % 29) + 4);
      return float_to_half(rng() % 2 ? mag : -mag);
    };
    b.d = scale();
    b.dmin = scale();
  }
  return blocks;
}

// How far `got` is from each of `want`'s values past quant.hpp's bound for a transcoded
// sub-block (the f16 rounding of d·sc and dmin·m, with `levels` = 2^bits − 1 and the float
// rounding of either form): the values out of bounds, and the values that moved at all.
template <class Block>
std::pair<std::size_t, std::size_t>
moved_by_f16_rounding(const std::vector<Block>& blocks, const std::vector<float>& want,
                      const std::vector<float>& got, double levels) {
  std::size_t out = 0, moved = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const auto& b = blocks[i / 256];
    const auto [sc, m] = scale_min(b.scales, static_cast<int>(i % 256 / 32));
    const double span =
        levels * std::fabs(half_to_float(b.d) * sc) + std::fabs(half_to_float(b.dmin) * m);
    const double bound =
        (std::ldexp(1.0, -11) + std::ldexp(1.0, -23)) * span + std::ldexp(1.0, -21);
    out += std::fabs(static_cast<double>(got[i]) - want[i]) > bound;
    moved += got[i] != want[i];
  }
  return {out, moved};
}

// The RMS and largest error of `got` against `want`, and of `want` re-quantized to Q8_0 (the
// route the CPU used to take): {rms, max, rms via Q8_0, max via Q8_0}.
std::array<double, 4> error_against_q8_0(const std::vector<float>& want,
                                         const std::vector<float>& got) {
  std::vector<block_q8_0> q8(want.size() / 32);
  EXPECT_TRUE(quantize_row(dtype::q8_0, want.data(), q8.data(), want.size()));
  const auto q80 = dequantized(dtype::q8_0, q8.data(), want.size());
  double err = 0, err80 = 0, max = 0, max80 = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double a = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double b = std::fabs(static_cast<double>(q80[i]) - want[i]);
    err += a * a;
    err80 += b * b;
    max = std::max(max, a);
    max80 = std::max(max80, b);
  }
  return {std::sqrt(err), max, std::sqrt(err80), max80};
}

// Any Q4_K block, zero, negative and subnormal scales included: each value moves by no more than
// the f16 rounding of its sub-block's d·sc and dmin·m (quant.hpp's bound), plus the float
// rounding of evaluating either form.
TEST(QuantTranscode, Q4KRowsReadBackWithinTheF16RoundingOfTheirSubBlockScales) {
  const auto blocks = random_k_blocks<block_q4_k>(2048, 3);
  const std::size_t n = blocks.size() * 256;
  const auto [out, moved] =
      moved_by_f16_rounding(blocks, dequantized(dtype::q4_k, blocks.data(), n),
                            dequantized(dtype::q4_1, transcoded(blocks).data(), n), 15);
  EXPECT_EQ(out, 0u);
  // Most products need more than f16's 11 bits: the test sees the rounding it bounds.
  EXPECT_GT(moved, n / 4);
}

// On blocks as quantizers write them, the transcoded rows sit far closer to the Q4_K values than
// the re-quantization to Q8_0 that the CPU used to make of them.
TEST(QuantTranscode, Q4KAsQ4_1IsFarCloserToTheStoredValuesThanQ8_0) {
  const auto blocks = typical_blocks(1024, 4);
  const std::size_t n = blocks.size() * 256;
  const auto [rms, max, rms80, max80] =
      error_against_q8_0(dequantized(dtype::q4_k, blocks.data(), n),
                         dequantized(dtype::q4_1, transcoded(blocks).data(), n));
  EXPECT_LT(rms, rms80 / 8) << "rms";
  EXPECT_LT(max, max80 / 4) << "max";
}

// The CPU computes a Q4_K matrix as Q4_1x8 (rows a multiple of 8) or Q4_1: either gives the
// float product of the dequantized Q4_K rows within what 8-bit activations cost (the tolerance
// of Dot.QuantizedDotsApproximateTheFloatDot), the same bits on every instruction set.
TEST(QuantTranscode, Q4KMatmulAsQ4_1MatchesTheFloatProductOfTheStoredRows) {
  const std::size_t cols = 768;
  for (std::size_t rows_out : {64, 60}) {
    const auto blocks = typical_blocks(rows_out * cols / 256, 5);
    const auto plain = transcoded(blocks);
    std::vector<block_q4_1x8> inter;
    matrix m{dtype::q4_1, plain.data(), rows_out, cols};
    if (rows_out % 8 == 0) {
      inter.resize(plain.size() / 8);
      interleave_rows(dtype::q4_1, plain.data(), rows_out, cols, inter.data());
      m = {dtype::q4_1x8, inter.data(), rows_out, cols};
    }
    const auto w = dequantized(dtype::q4_k, blocks.data(), rows_out * cols);
    for (std::size_t rows : {1, 3}) {
      const auto x = aeg::testing::normal_floats(rows * cols, 6 + static_cast<std::uint32_t>(rows));
      std::vector<std::byte> scratch(cpu::matmul_scratch_bytes(m, rows));
      std::vector<float> y(rows * rows_out), y_portable(rows * rows_out);
      cpu::matmul(m, x.data(), rows, y.data(), scratch.data());
      cpu::matmul(m, x.data(), rows, y_portable.data(), scratch.data(), cpu::cpu_isa::portable);
      if (m.type == dtype::q4_1x8)
        EXPECT_EQ(y, y_portable) << "rows " << rows;
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < rows_out; ++j)
          ASSERT_TRUE(near_product(y[r * rows_out + j], &w[j * cols], &x[r * cols], cols))
              << traits(m.type).name << " output " << j << " of activation row " << r;
    }
  }
}

TEST(QuantTranscode, Q5KBlocksWhoseScalesFitF16BecomeQ5_1BitForBit) {
  std::mt19937 rng(7);
  auto blocks = typical_q5_k(64, 8);
  for (auto& b : blocks) {
    b.d = float_to_half(std::ldexp(1.0f, -static_cast<int>(4 + rng() % 8)));
    b.dmin = float_to_half(std::ldexp(1.0f, -static_cast<int>(4 + rng() % 8)));
  }
  const std::size_t n = blocks.size() * 256;
  EXPECT_EQ(dequantized(dtype::q5_1, transcoded(blocks).data(), n),
            dequantized(dtype::q5_k, blocks.data(), n));
}

// Any Q5_K block (random bytes, scales of either sign from subnormal to 2^4, some zero): each
// value moves by no more than the f16 rounding of its sub-block's d·sc and dmin·m, with 31 for
// Q4_K's 15 (quant.hpp's bound).
TEST(QuantTranscode, Q5KRowsReadBackWithinTheF16RoundingOfTheirSubBlockScales) {
  const auto blocks = random_k_blocks<block_q5_k>(2048, 9);
  const std::size_t n = blocks.size() * 256;
  const auto [out, moved] =
      moved_by_f16_rounding(blocks, dequantized(dtype::q5_k, blocks.data(), n),
                            dequantized(dtype::q5_1, transcoded(blocks).data(), n), 31);
  EXPECT_EQ(out, 0u);
  EXPECT_GT(moved, n / 4);
}

TEST(QuantTranscode, Q5KAsQ5_1IsFarCloserToTheStoredValuesThanQ8_0) {
  const auto blocks = typical_q5_k(1024, 10);
  const std::size_t n = blocks.size() * 256;
  const auto [rms, max, rms80, max80] =
      error_against_q8_0(dequantized(dtype::q5_k, blocks.data(), n),
                         dequantized(dtype::q5_1, transcoded(blocks).data(), n));
  EXPECT_LT(rms, rms80 / 8) << "rms";
  EXPECT_LT(max, max80 / 2) << "max";
}

// A Q5_K matrix as the CPU computes it, Q5_1x8 (rows a multiple of 8) or Q5_1 rows, on every
// instruction set, for shapes that leave remainders everywhere: 13 rows (no interleaving), 8
// and 72 rows (one and nine groups), 1 to 6 activation rows (VNNI takes them 4 at a time, AVX2
// 2 at a time), 768 columns (3 super-blocks). Each output is the float product of the
// dequantized Q5_K rows within what 8-bit activations cost, the interleaved layout gives the
// same bits everywhere, and the row-major one agrees with it up to the order of float sums.
TEST(QuantTranscode, Q5KMatmulAsQ5_1MatchesTheFloatProductOfTheStoredRowsOnEveryIsa) {
  const std::size_t cols = 768;
  const auto isas = available_isas();
  for (std::size_t rows_out : {13, 8, 72}) {
    const auto blocks = typical_q5_k(rows_out * cols / 256, 11);
    const auto plain = transcoded(blocks);
    std::vector<block_q5_1x8> inter;
    const matrix rowmajor{dtype::q5_1, plain.data(), rows_out, cols};
    matrix m = rowmajor;
    if (rows_out % 8 == 0) {
      inter.resize(plain.size() / 8);
      interleave_rows(dtype::q5_1, plain.data(), rows_out, cols, inter.data());
      m = {dtype::q5_1x8, inter.data(), rows_out, cols};
      std::vector<float> a(cols), b(cols);
      for (std::size_t r = 0; r < rows_out; ++r) {
        dequantize_row(dtype::q5_1, plain.data() + r * cols / 32, a.data(), cols);
        dequantize_interleaved_row(dtype::q5_1x8, inter.data(), r, cols, b.data());
        ASSERT_EQ(a, b) << "row " << r;
      }
    }
    const auto w = dequantized(dtype::q5_k, blocks.data(), rows_out * cols);
    for (std::size_t rows = 1; rows <= 6; ++rows) {
      const auto x =
          aeg::testing::normal_floats(rows * cols, 12 + static_cast<std::uint32_t>(rows));
      std::vector<std::byte> scratch(cpu::matmul_scratch_bytes(m, rows));
      std::vector<float> y(rows * rows_out), first(rows * rows_out), plain_y(rows * rows_out);
      cpu::matmul(rowmajor, x.data(), rows, plain_y.data(), scratch.data(), cpu::cpu_isa::portable);
      for (auto isa : isas) {
        cpu::matmul(m, x.data(), rows, y.data(), scratch.data(), isa);
        if (isa == cpu::cpu_isa::portable)
          first = y;
        else if (m.type == dtype::q5_1x8)
          ASSERT_EQ(y, first) << "isa " << static_cast<int>(isa) << ", rows " << rows;
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t j = 0; j < rows_out; ++j) {
            const std::size_t at = r * rows_out + j;
            ASSERT_TRUE(near_product(y[at], &w[j * cols], &x[r * cols], cols))
                << traits(m.type).name << " output " << j << " of activation row " << r;
            const double norm = product_of(&w[j * cols], &x[r * cols], cols).norm;
            ASSERT_NEAR(y[at], plain_y[at], 1e-4 * (norm + std::fabs(plain_y[at])));
          }
      }
    }
  }
}

} // namespace
} // namespace aeg::kernels
