#pragma once

#include "kernels/matrix.hpp"

#include <cstddef>
#include <span>

namespace aeg::kernels::cpu {

/// Scratch bytes `matmul` needs for `rows` activation rows of `w.cols` values.
std::size_t matmul_scratch_bytes(const matrix& w, std::size_t rows) noexcept;

/// `y[r][j] = sum_k x[r][k] * w[j][k]` for `rows` rows of `x` ([rows, w.cols] floats) into `y`
/// ([rows, w.rows] floats). Quantized weights take the activations quantized to Q8 blocks in
/// `scratch`. Each output is one dot product computed the same way whatever `rows` is, so a
/// row's result does not depend on what else is in the batch. Uses every compute thread.
void matmul(const matrix& w, const float* x, std::size_t rows, float* y, void* scratch);

/// y_i = x · w_iᵀ for matrices that share their input (a layer's q, k and v; gate and up): the
/// input is quantized once and one job covers every matrix. `scratch` holds
/// matmul_scratch_bytes of the widest.
void matmul_many(std::span<const matrix> ws, const float* x, std::size_t rows,
                 std::span<float* const> ys, void* scratch);

/// Instruction sets the CPU kernels have code for.
enum class cpu_isa { portable, avx2, avx512_vnni };

/// The best `cpu_isa` this processor runs.
cpu_isa best_isa() noexcept;

/// `matmul` with the code for `isa` (which the processor must support); the interleaved types
/// give bit-identical results on every isa. For tests.
void matmul(const matrix& w, const float* x, std::size_t rows, float* y, void* scratch,
            cpu_isa isa);
/// `matmul_many` with the code for `isa`. For tests.
void matmul_many(std::span<const matrix> ws, const float* x, std::size_t rows,
                 std::span<float* const> ys, void* scratch, cpu_isa isa);

} // namespace aeg::kernels::cpu
