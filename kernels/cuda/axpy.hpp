#pragma once

#include "coro/error.hpp"

#include <cstddef>

namespace aeg::kernels::cuda {

/// Launches `y[i] += a * x[i]` on the CUDA stream `stream` (a cudaStream_t). Host-compilable.
[[nodiscard]] result<void> axpy(void* stream, float a, const float* x, float* y,
                                std::size_t n) noexcept;

} // namespace aeg::kernels::cuda
