#include "kernels/axpy.hpp"

#include "kernels/cpu/axpy.hpp"
#include "kernels/cuda/axpy.hpp"

namespace aeg::kernels {

result<void> axpy(gpu::stream& s, float a, const float* x, float* y, std::size_t n) {
  switch (s.kind()) {
  case gpu::backend_kind::cpu:
    return s.host_callback([=] { cpu::axpy(a, x, y, n); });
  case gpu::backend_kind::cuda:
    if (auto r = s.make_current(); !r)
      return r;
    return cuda::axpy(s.native_handle(), a, x, y, n);
  case gpu::backend_kind::sim:
    break; // a simulated device computes nothing: its costs come from the profile
  }
  return fail(errc::unavailable, "axpy: no kernel for this stream's backend in this build");
}

} // namespace aeg::kernels
