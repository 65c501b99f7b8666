#include "kernels/cuda/axpy.hpp"

#include <cuda_runtime.h>

#include <string>

namespace aeg::kernels::cuda {

namespace {

__global__ void axpy_kernel(float a, const float* __restrict__ x, float* __restrict__ y,
                            std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x)
    y[i] += a * x[i];
}

} // namespace

result<void> axpy(void* stream, float a, const float* x, float* y, std::size_t n) noexcept {
  if (n == 0)
    return {};
  constexpr unsigned threads = 256;
  const auto blocks =
      static_cast<unsigned>(std::min<std::size_t>((n + threads - 1) / threads, 65535));
  axpy_kernel<<<blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(a, x, y, n);
  if (auto err = cudaGetLastError(); err != cudaSuccess)
    return fail(errc::device_error, std::string("axpy launch: ") + cudaGetErrorString(err));
  return {};
}

} // namespace aeg::kernels::cuda
