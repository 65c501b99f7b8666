#pragma once

#include "kernels/matrix.hpp"

#include <cstddef>

namespace aeg::kernels::cpu {

/// Scratch bytes `matmul` needs for `rows` activation rows of `w.cols` values.
std::size_t matmul_scratch_bytes(const matrix& w, std::size_t rows) noexcept;

/// `y[r][j] = sum_k x[r][k] * w[j][k]` for `rows` rows of `x` ([rows, w.cols] floats) into `y`
/// ([rows, w.rows] floats). Quantized weights take the activations quantized to Q8 blocks in
/// `scratch`. Each output is one dot product computed the same way whatever `rows` is, so a
/// row's result does not depend on what else is in the batch. Uses every compute thread.
void matmul(const matrix& w, const float* x, std::size_t rows, float* y, void* scratch);

/// `matmul` with the vector code (AVX2) on or off; off is the portable reference. For tests.
void matmul(const matrix& w, const float* x, std::size_t rows, float* y, void* scratch,
            bool vectorized);

} // namespace aeg::kernels::cpu
