// Interleaved layouts (8 rows side by side, as the CPU computes with them): they read back bit
// for bit, and the matmul over them matches the float product, on every instruction set, for a
// few rows and for a long prompt's.
#include "kernels/cpu/matmul.hpp"
#include "kernels/quant.hpp"
#include "tests/kernels/quant_blocks.hpp"
#include "tests/support/random_values.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

namespace aeg::kernels {
namespace {

using namespace testing;

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
          for (std::size_t j = 0; j < rows_out; ++j)
            ASSERT_TRUE(near_product(y[r * rows_out + j], &w[j * cols], &x[r * cols], cols))
                << "output " << j << " of activation row " << r;
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
      for (std::size_t j = 0; j < out; ++j)
        ASSERT_TRUE(near_product(y[r * out + j], &dequant[m][j * cols], &x[r * cols], cols))
            << traits(ms[m].type).name << " output " << j << " of row " << r;
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
