#pragma once

#include "coro/error.hpp"
#include "gpu/stream.hpp"

#include <cstddef>

namespace aeg::kernels {

/// Enqueues `y[i] += a * x[i]` for `i < n` on `s`; `x` and `y` are device memory of the
/// stream's device, `n` floats each. Runs on the stream's backend.
[[nodiscard]] result<void> axpy(gpu::stream& s, float a, const float* x, float* y, std::size_t n);

} // namespace aeg::kernels
