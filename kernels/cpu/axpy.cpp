#include "kernels/cpu/axpy.hpp"

namespace aeg::kernels::cpu {

void axpy(float a, const float* x, float* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    y[i] += a * x[i];
}

} // namespace aeg::kernels::cpu
