#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"
#include "tests/support/random_values.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace aeg::kernels {
namespace {

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

// Any Q4_K block, zero, negative and subnormal scales included: each value moves by no more than
// the f16 rounding of its sub-block's d·sc and dmin·m (quant.hpp's bound), plus the float
// rounding of evaluating either form.
TEST(QuantTranscode, Q4KRowsReadBackWithinTheF16RoundingOfTheirSubBlockScales) {
  std::mt19937 rng(3);
  std::vector<block_q4_k> blocks(2048);
  for (auto& b : blocks) {
    std::uint8_t bytes[sizeof(block_q4_k)];
    for (auto& x : bytes)
      x = static_cast<std::uint8_t>(rng());
    std::memcpy(&b, bytes, sizeof b);
    // Scales from 2^-24 (subnormal) to 2^4, either sign; sometimes zero.
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
  const std::size_t n = blocks.size() * 256;
  const auto want = dequantized(dtype::q4_k, blocks.data(), n);
  const auto got = dequantized(dtype::q4_1, transcoded(blocks).data(), n);
  std::size_t moved = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& b = blocks[i / 256];
    const auto [sc, m] = scale_min(b.scales, static_cast<int>(i % 256 / 32));
    const double span =
        15 * std::fabs(half_to_float(b.d) * sc) + std::fabs(half_to_float(b.dmin) * m);
    const double bound =
        (std::ldexp(1.0, -11) + std::ldexp(1.0, -23)) * span + std::ldexp(1.0, -21);
    ASSERT_LE(std::fabs(static_cast<double>(got[i]) - want[i]), bound) << "value " << i;
    moved += got[i] != want[i];
  }
  // Most products need more than f16's 11 bits: the test sees the rounding it bounds.
  EXPECT_GT(moved, n / 4);
}

// On blocks as quantizers write them, the transcoded rows sit far closer to the Q4_K values than
// the re-quantization to Q8_0 that the CPU used to make of them.
TEST(QuantTranscode, Q4KAsQ4_1IsFarCloserToTheStoredValuesThanQ8_0) {
  const auto blocks = typical_blocks(1024, 4);
  const std::size_t n = blocks.size() * 256;
  const auto want = dequantized(dtype::q4_k, blocks.data(), n);
  const auto q41 = dequantized(dtype::q4_1, transcoded(blocks).data(), n);
  std::vector<block_q8_0> q8(n / 32);
  ASSERT_TRUE(quantize_row(dtype::q8_0, want.data(), q8.data(), n));
  const auto q80 = dequantized(dtype::q8_0, q8.data(), n);
  double err41 = 0, err80 = 0, max41 = 0, max80 = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double a = std::fabs(static_cast<double>(q41[i]) - want[i]);
    const double b = std::fabs(static_cast<double>(q80[i]) - want[i]);
    err41 += a * a;
    err80 += b * b;
    max41 = std::max(max41, a);
    max80 = std::max(max80, b);
  }
  EXPECT_LT(std::sqrt(err41), std::sqrt(err80) / 8) << "rms";
  EXPECT_LT(max41, max80 / 4) << "max";
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

} // namespace
} // namespace aeg::kernels
