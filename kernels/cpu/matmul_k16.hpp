#pragma once

// The CPU matmul kernels of the interleaved types with a scale per 16 columns (Q6_Kx8, Q3_Kx8,
// Q2_Kx8), for matmul.cpp: they take, besides the quantized activations, each activation
// block's two 16-value sums, computed once per matmul.

#include "kernels/cpu/matmul.hpp"
#include "kernels/quant.hpp"

#include <cstdint>
#include <vector>

namespace aeg::kernels::cpu {

/// Whether the interleaved type `t` has a scale per 16 columns (Q6_Kx8, Q3_Kx8, Q2_Kx8) and so
/// is computed by `run_k16_group`.
bool is_k16(dtype t) noexcept;

/// The sum of each half (16 values) of each of `blocks` activation blocks' 8-bit values, two per
/// block: the offset term of Q6_Kx8 and Q3_Kx8 and the min term of Q2_Kx8.
std::vector<std::int32_t> half_sums(const block_q8a* xq, std::size_t blocks);

/// Group `g` (rows 8g..8g+7) of `w` (an `is_k16` type) against `rows` activation rows `xq`, with
/// `xsum` as `half_sums` writes it; `acc` gets 8 floats per activation row. The same bits on
/// every `isa`.
void run_k16_group(const matrix& w, std::size_t g, const block_q8a* xq, const std::int32_t* xsum,
                   std::size_t rows, float* acc, cpu_isa isa);

} // namespace aeg::kernels::cpu
