#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ops.hpp"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

namespace aeg::kernels::cuda {

namespace {

result<void> blas_check(const char* what, cublasStatus_t st) noexcept {
  if (st == CUBLAS_STATUS_SUCCESS)
    return {};
  return fail(errc::device_error, std::string(what) + ": " + cublasGetStatusName(st) + " (" +
                                      cublasGetStatusString(st) + ")");
}

template <class T>
__global__ void to_half_kernel(const float* x, std::size_t n, T* out) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) {
    if constexpr (std::is_same_v<T, __half>)
      out[i] = __float2half_rn(x[i]);
    else
      out[i] = __float2bfloat16_rn(x[i]);
  }
}

} // namespace

result<void*> create_blas(void* stream) noexcept {
  cublasHandle_t h = nullptr;
  if (auto r = blas_check("cublasCreate", cublasCreate(&h)); !r)
    return tl::unexpected(r.error());
  if (auto r = blas_check("cublasSetStream", cublasSetStream(h, static_cast<cudaStream_t>(stream)));
      !r) {
    cublasDestroy(h);
    return tl::unexpected(r.error());
  }
  return static_cast<void*>(h);
}

void destroy_blas(void* blas) noexcept {
  cublasDestroy(static_cast<cublasHandle_t>(blas));
}

result<void> matmul(void* stream, void* blas, const matrix& w, const float* x, std::size_t rows,
                    float* y, void* scratch) noexcept {
  if (rows == 0)
    return {};
  auto s = static_cast<cudaStream_t>(stream);
  const std::size_t n = rows * w.cols;
  const bool half = w.type == dtype::f16;
  if (half)
    to_half_kernel<<<blocks_for(n, 256), 256, 0, s>>>(x, n, static_cast<__half*>(scratch));
  else
    to_half_kernel<<<blocks_for(n, 256), 256, 0, s>>>(x, n, static_cast<__nv_bfloat16*>(scratch));
  if (auto r = check("matmul: activation conversion"); !r)
    return r;
  // Row-major W [rows_out, cols] is column-major [cols, rows_out]: y^T = W · x^T.
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType t = half ? CUDA_R_16F : CUDA_R_16BF;
  return blas_check("cublasGemmEx",
                    cublasGemmEx(static_cast<cublasHandle_t>(blas), CUBLAS_OP_T, CUBLAS_OP_N,
                                 static_cast<int>(w.rows), static_cast<int>(rows),
                                 static_cast<int>(w.cols), &alpha, w.data, t,
                                 static_cast<int>(w.cols), scratch, t, static_cast<int>(w.cols),
                                 &beta, y, CUDA_R_32F, static_cast<int>(w.rows), CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
}

} // namespace aeg::kernels::cuda
