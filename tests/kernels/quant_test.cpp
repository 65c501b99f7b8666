#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"
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

// Every instruction set this processor runs, the portable one first.
std::vector<cpu::cpu_isa> available_isas() {
  std::vector<cpu::cpu_isa> isas = {cpu::cpu_isa::portable};
  if (cpu::uses_avx2())
    isas.push_back(cpu::cpu_isa::avx2);
  if (cpu::best_isa() == cpu::cpu_isa::avx512_vnni)
    isas.push_back(cpu::cpu_isa::avx512_vnni);
  return isas;
}

// Q4_K's eight 6-bit scales and mins in its 12 bytes (the inverse of ggml's get_scale_min_k4).
void pack_scales_mins(const std::uint8_t* sc, const std::uint8_t* m, std::uint8_t* out) {
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<std::uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<std::uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

// Sub-block j's scale and min, read back from the 12 bytes.
std::pair<int, int> scale_min(const std::uint8_t* s, int j) {
  if (j < 4)
    return {s[j] & 63, s[j + 4] & 63};
  return {(s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)};
}

// Q4_K blocks as a quantizer writes them: positive d and dmin of a weight's size (about 1e-3),
// every scale and min from 0 to 63, random 4-bit values.
std::vector<block_q4_k> typical_blocks(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  std::vector<block_q4_k> out(n);
  for (auto& b : out) {
    b.d = float_to_half(1e-3f * u(rng));
    b.dmin = float_to_half(1e-3f * u(rng));
    std::uint8_t sc[8], m[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = static_cast<std::uint8_t>(rng() % 64);
      m[j] = static_cast<std::uint8_t>(rng() % 64);
    }
    pack_scales_mins(sc, m, b.scales);
    for (auto& q : b.qs)
      q = static_cast<std::uint8_t>(rng());
  }
  return out;
}

std::vector<float> dequantized(dtype t, const void* src, std::size_t n) {
  std::vector<float> y(n);
  dequantize_row(t, src, y.data(), n);
  return y;
}

std::vector<block_q4_1> transcoded(const std::vector<block_q4_k>& k) {
  EXPECT_EQ(transcoded_type(dtype::q4_k), dtype::q4_1);
  std::vector<block_q4_1> out(k.size() * 8);
  transcode_row(dtype::q4_k, k.data(), out.data(), k.size() * 256);
  return out;
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
        for (std::size_t j = 0; j < rows_out; ++j) {
          double exact = 0, norm = 0;
          for (std::size_t k = 0; k < cols; ++k) {
            exact += static_cast<double>(w[j * cols + k]) * x[r * cols + k];
            norm += std::fabs(static_cast<double>(w[j * cols + k]) * x[r * cols + k]);
          }
          ASSERT_NEAR(y[r * rows_out + j], exact, 0.01 * norm)
              << traits(m.type).name << " output " << j << " of activation row " << r;
        }
    }
  }
}

// Q5_K blocks as a quantizer writes them: Q4_K's scales and mins, random 5-bit values.
std::vector<block_q5_k> typical_q5_k(std::size_t n, std::uint32_t seed) {
  const auto q4 = typical_blocks(n, seed);
  std::mt19937 rng(seed + 1000);
  std::vector<block_q5_k> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i].d = q4[i].d;
    out[i].dmin = q4[i].dmin;
    std::memcpy(out[i].scales, q4[i].scales, sizeof out[i].scales);
    std::memcpy(out[i].qs, q4[i].qs, sizeof out[i].qs);
    for (auto& h : out[i].qh)
      h = static_cast<std::uint8_t>(rng());
  }
  return out;
}

std::vector<block_q5_1> transcoded(const std::vector<block_q5_k>& k) {
  EXPECT_EQ(transcoded_type(dtype::q5_k), dtype::q5_1);
  std::vector<block_q5_1> out(k.size() * 8);
  transcode_row(dtype::q5_k, k.data(), out.data(), k.size() * 256);
  return out;
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
            double exact = 0, norm = 0;
            for (std::size_t k = 0; k < cols; ++k) {
              exact += static_cast<double>(w[j * cols + k]) * x[r * cols + k];
              norm += std::fabs(static_cast<double>(w[j * cols + k]) * x[r * cols + k]);
            }
            ASSERT_NEAR(y[at], exact, 0.01 * norm)
                << traits(m.type).name << " output " << j << " of activation row " << r;
            ASSERT_NEAR(y[at], plain_y[at], 1e-4 * (norm + std::fabs(plain_y[at])));
          }
      }
    }
  }
}

// Q6_K, Q3_K and Q2_K blocks from random bytes (every scale, min and value) with a d (and Q2_K's
// dmin) of a weight's size; Q6_K and Q3_K keep d in their last two bytes, Q2_K d and dmin in its
// last four.
std::vector<std::byte> random_split_blocks(dtype t, std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  const std::size_t size = traits(t).block_bytes;
  std::vector<std::byte> out(n * size);
  for (auto& b : out)
    b = static_cast<std::byte>(rng());
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < (t == dtype::q2_k ? 2 : 1); ++k) {
      const auto d = float_to_half(1e-4f * (0.5f + static_cast<float>(rng() % 1024) / 1024.0f));
      std::memcpy(out.data() + (i + 1) * size - 2 * (k + 1), &d, 2);
    }
  }
  return out;
}

// Q6_K, Q3_K and Q2_K matrices of a multiple of 8 rows are interleaved as they are (Q6_Kx8, the
// same 210 bytes a row; Q3_Kx8, 114 for Q3_K's 110; Q2_Kx8, the same 84): every row reads back
// bit for bit, and the matmul over them (integer sums per 16 columns times the scales, and for
// Q2_K the mins times the activations' 16-column sums, exact) equals the float product of the
// stored rows within what 8-bit activations cost, with the same bits on every instruction set.
// 1 to 6 activation rows leave remainders on every isa.
TEST(QuantInterleave,
     KQuantsPer16MatricesInterleaveExactlyAndMatmulMatchesTheFloatProductOnEveryIsa) {
  const std::size_t cols = 768;
  const auto isas = available_isas();
  for (dtype stored : {dtype::q6_k, dtype::q3_k, dtype::q2_k})
    for (std::size_t rows_out : {8, 72}) {
      SCOPED_TRACE(std::string(traits(stored).name) + ", " + std::to_string(rows_out) + " rows");
      const auto x8 = interleaved_type(stored);
      ASSERT_TRUE(x8);
      const auto blocks = random_split_blocks(stored, rows_out * cols / 256, 13);
      std::vector<std::byte> inter(rows_out * row_bytes(*x8, cols));
      interleave_rows(stored, blocks.data(), rows_out, cols, inter.data());
      const auto w = dequantized(stored, blocks.data(), rows_out * cols);
      std::vector<float> row(cols);
      for (std::size_t r = 0; r < rows_out; ++r) {
        dequantize_interleaved_row(*x8, inter.data(), r, cols, row.data());
        ASSERT_EQ(row, std::vector<float>(w.begin() + r * cols, w.begin() + (r + 1) * cols))
            << "row " << r;
      }
      const matrix m{*x8, inter.data(), rows_out, cols};
      for (std::size_t rows = 1; rows <= 6; ++rows) {
        const auto x =
            aeg::testing::normal_floats(rows * cols, 14 + static_cast<std::uint32_t>(rows));
        std::vector<std::byte> scratch(cpu::matmul_scratch_bytes(m, rows));
        std::vector<float> y(rows * rows_out), first;
        for (auto isa : isas) {
          cpu::matmul(m, x.data(), rows, y.data(), scratch.data(), isa);
          if (first.empty())
            first = y;
          ASSERT_EQ(y, first) << "isa " << static_cast<int>(isa) << ", rows " << rows;
        }
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t j = 0; j < rows_out; ++j) {
            double exact = 0, norm = 0;
            for (std::size_t k = 0; k < cols; ++k) {
              exact += static_cast<double>(w[j * cols + k]) * x[r * cols + k];
              norm += std::fabs(static_cast<double>(w[j * cols + k]) * x[r * cols + k]);
            }
            ASSERT_NEAR(y[r * rows_out + j], exact, 0.01 * norm)
                << "output " << j << " of activation row " << r;
          }
      }
    }
}

// A K-quant mix puts layouts side by side in one call (attn_q and attn_k Q5_K, attn_v Q6_K in a
// Q5_K_M layer): matmul_many over Q5_1x8, Q6_Kx8, Q4_1x8, Q3_Kx8 and Q2_Kx8 matrices gives each the
// bits it gets alone, on every isa, also beside a row-major matrix.
TEST(QuantInterleave, MixedLayoutsInOneMatmulManyGiveWhatEachGivesAlone) {
  const std::size_t cols = 512, rows = 3;
  const auto isas = available_isas();
  const auto q5 = transcoded(typical_q5_k(16 * cols / 256, 21));
  std::vector<block_q5_1x8> w5(q5.size() / 8);
  interleave_rows(dtype::q5_1, q5.data(), 16, cols, w5.data());
  const auto q4 = transcoded(typical_blocks(8 * cols / 256, 22));
  std::vector<block_q4_1x8> w4(q4.size() / 8);
  interleave_rows(dtype::q4_1, q4.data(), 8, cols, w4.data());
  const auto q6 = random_split_blocks(dtype::q6_k, 24 * cols / 256, 23);
  std::vector<block_q6_kx8> w6(24 * cols / 256 / 8);
  interleave_rows(dtype::q6_k, q6.data(), 24, cols, w6.data());
  const auto q3 = random_split_blocks(dtype::q3_k, 8 * cols / 256, 25);
  std::vector<block_q3_kx8> w3(8 * cols / 256 / 8);
  interleave_rows(dtype::q3_k, q3.data(), 8, cols, w3.data());
  const auto q2 = random_split_blocks(dtype::q2_k, 16 * cols / 256, 26);
  std::vector<block_q2_kx8> w2(16 * cols / 256 / 8);
  interleave_rows(dtype::q2_k, q2.data(), 16, cols, w2.data());
  const matrix interleaved[] = {{dtype::q5_1x8, w5.data(), 16, cols},
                                {dtype::q6_kx8, w6.data(), 24, cols},
                                {dtype::q4_1x8, w4.data(), 8, cols},
                                {dtype::q3_kx8, w3.data(), 8, cols},
                                {dtype::q2_kx8, w2.data(), 16, cols}};
  // With a row-major matrix among them (13 rows of Q5_1), each still takes its own kernel.
  const matrix mixed[] = {interleaved[0], {dtype::q5_1, q5.data(), 13, cols}, interleaved[1]};
  const auto x = aeg::testing::normal_floats(rows * cols, 24);
  std::vector<std::byte> scratch(cpu::matmul_scratch_bytes(interleaved[0], rows));
  for (std::span<const matrix> ms :
       {std::span<const matrix>(interleaved), std::span<const matrix>(mixed)})
    for (auto isa : isas) {
      std::vector<std::vector<float>> together, alone;
      std::vector<float*> ys;
      for (const auto& m : ms) {
        together.emplace_back(rows * m.rows);
        alone.emplace_back(rows * m.rows);
        ys.push_back(together.back().data());
      }
      cpu::matmul_many(ms, x.data(), rows, ys, scratch.data(), isa);
      for (std::size_t i = 0; i < ms.size(); ++i) {
        cpu::matmul(ms[i], x.data(), rows, alone[i].data(), scratch.data(), isa);
        EXPECT_EQ(together[i], alone[i])
            << traits(ms[i].type).name << " isa " << static_cast<int>(isa);
      }
    }
}

// A long prompt's activation rows are walked in chunks that stay in cache (about 1 MiB of
// quantized rows: 192 rows of 4096 columns). 500 rows, two whole chunks and a part, give every
// row the bits it gets alone, for an affine and a per-16-column layout of 72 rows (9 groups, so
// the threads split them), each alone and both in one call, on every isa.
TEST(QuantInterleave, RowsBeyondOneCacheChunkGiveTheBitsEachRowGetsAlone) {
  const std::size_t cols = 4096, rows = 500, out = 72;
  const auto q4 = transcoded(typical_blocks(out * cols / 256, 31));
  std::vector<block_q4_1x8> w4(q4.size() / 8);
  interleave_rows(dtype::q4_1, q4.data(), out, cols, w4.data());
  const auto q6 = random_split_blocks(dtype::q6_k, out * cols / 256, 32);
  std::vector<block_q6_kx8> w6(out * cols / 256 / 8);
  interleave_rows(dtype::q6_k, q6.data(), out, cols, w6.data());
  const matrix ms[] = {{dtype::q4_1x8, w4.data(), out, cols},
                       {dtype::q6_kx8, w6.data(), out, cols}};
  const auto x = aeg::testing::normal_floats(rows * cols, 33);
  std::vector<std::byte> scratch(cpu::matmul_scratch_bytes(ms[0], rows));
  // Every output in its place: the rows at the chunks' edges against the dequantized weights.
  const std::vector<float> dequant[] = {dequantized(dtype::q4_1, q4.data(), out * cols),
                                        dequantized(dtype::q6_k, q6.data(), out * cols)};
  for (std::size_t m = 0; m < 2; ++m) {
    std::vector<float> y(rows * out);
    cpu::matmul(ms[m], x.data(), rows, y.data(), scratch.data());
    for (std::size_t r : {0, 191, 192, 383, 384, 499})
      for (std::size_t j = 0; j < out; ++j) {
        double exact = 0, norm = 0;
        for (std::size_t k = 0; k < cols; ++k) {
          exact += static_cast<double>(dequant[m][j * cols + k]) * x[r * cols + k];
          norm += std::fabs(static_cast<double>(dequant[m][j * cols + k]) * x[r * cols + k]);
        }
        ASSERT_NEAR(y[r * out + j], exact, 0.01 * norm)
            << traits(ms[m].type).name << " output " << j << " of row " << r;
      }
  }
  for (auto isa : available_isas()) {
    std::vector<float> alone(rows * out), both0(rows * out), both1(rows * out), one(out);
    float* const ys[] = {both0.data(), both1.data()};
    cpu::matmul_many(ms, x.data(), rows, ys, scratch.data(), isa);
    for (std::size_t m = 0; m < 2; ++m) {
      cpu::matmul(ms[m], x.data(), rows, alone.data(), scratch.data(), isa);
      EXPECT_EQ(alone, m == 0 ? both0 : both1)
          << traits(ms[m].type).name << " isa " << static_cast<int>(isa);
      for (std::size_t r = 0; r < rows; ++r) {
        cpu::matmul(ms[m], x.data() + r * cols, 1, one.data(), scratch.data(), isa);
        ASSERT_TRUE(std::equal(one.begin(), one.end(), alone.begin() + r * out))
            << traits(ms[m].type).name << " isa " << static_cast<int>(isa) << " row " << r;
      }
    }
  }
}

} // namespace
} // namespace aeg::kernels
