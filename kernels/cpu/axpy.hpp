#pragma once

#include <cstddef>

namespace aeg::kernels::cpu {

/// `y[i] += a * x[i]` for `i < n`, on the calling thread. The reference for the CUDA twin.
void axpy(float a, const float* x, float* y, std::size_t n) noexcept;

} // namespace aeg::kernels::cpu
