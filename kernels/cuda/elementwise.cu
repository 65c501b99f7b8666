#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ops.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace aeg::kernels::cuda {

namespace {

__device__ inline float to_float(float x) {
  return x;
}
__device__ inline float to_float(__half x) {
  return __half2float(x);
}
__device__ inline float to_float(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

template <class T>
__device__ inline T from_float(float x);
template <>
__device__ inline float from_float<float>(float x) {
  return x;
}
template <>
__device__ inline __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

template <class T>
__global__ void embed_kernel(const T* table, std::size_t cols, const std::int32_t* tokens,
                             std::size_t n, float* out) {
  const std::size_t i = blockIdx.x;
  const T* row = table + static_cast<std::size_t>(tokens[i]) * cols;
  for (std::size_t c = blockIdx.y * blockDim.x + threadIdx.x; c < cols; c += gridDim.y * blockDim.x)
    out[i * cols + c] = to_float(row[c]);
}

// One block per row; the sum of squares is reduced in shared memory.
__global__ void rmsnorm_kernel(const float* x, const float* w, std::size_t dim, float eps,
                               float* out) {
  __shared__ float partial[256];
  const float* xr = x + blockIdx.x * dim;
  float* yr = out + blockIdx.x * dim;
  float ss = 0;
  for (std::size_t i = threadIdx.x; i < dim; i += blockDim.x)
    ss += xr[i] * xr[i];
  partial[threadIdx.x] = ss;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s)
      partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  const float scale = rsqrtf(partial[0] / static_cast<float>(dim) + eps);
  for (std::size_t i = threadIdx.x; i < dim; i += blockDim.x)
    yr[i] = xr[i] * scale * w[i];
}

__global__ void rope_kernel(float* x, std::size_t heads, std::size_t head_dim, std::size_t n_rot,
                            const std::int32_t* positions, float base, const float* factors) {
  const std::size_t r = blockIdx.x;
  const std::size_t pairs = n_rot / 2;
  for (std::size_t item = threadIdx.x; item < heads * pairs; item += blockDim.x) {
    const std::size_t h = item / pairs, i = item % pairs;
    const float inv_freq = powf(base, -2.0f * static_cast<float>(i) / static_cast<float>(n_rot)) /
                           (factors != nullptr ? factors[i] : 1.0f);
    float s, c;
    sincosf(static_cast<float>(positions[r]) * inv_freq, &s, &c);
    float* v = x + (r * heads + h) * head_dim + 2 * i;
    const float x0 = v[0], x1 = v[1];
    v[0] = x0 * c - x1 * s;
    v[1] = x0 * s + x1 * c;
  }
}

template <class T>
__global__ void kv_store_kernel(kv_geometry g, std::size_t layer, const float* k, const float* v,
                                const std::int32_t* slots, char* kv) {
  const std::size_t r = blockIdx.x;
  const std::size_t width = g.kv_heads * g.head_dim;
  const std::size_t slot = static_cast<std::size_t>(slots[r]);
  char* blk = kv + slot / kv_geometry::block_tokens * g.block_bytes();
  T* kd = reinterpret_cast<T*>(blk + g.offset(layer, false, slot % kv_geometry::block_tokens));
  T* vd = reinterpret_cast<T*>(blk + g.offset(layer, true, slot % kv_geometry::block_tokens));
  for (std::size_t i = threadIdx.x; i < width; i += blockDim.x) {
    kd[i] = from_float<T>(k[r * width + i]);
    vd[i] = from_float<T>(v[r * width + i]);
  }
}

__global__ void swiglu_kernel(const float* gate, const float* up, std::size_t n, float* out) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void add_kernel(float* x, const float* y, std::size_t n) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n)
    x[i] += y[i];
}

__global__ void add_bias_kernel(float* x, const float* bias, std::size_t width, std::size_t n) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n)
    x[i] += bias[i % width];
}

__global__ void gather_kernel(const float* x, const std::int32_t* rows, std::size_t dim,
                              float* out) {
  const std::size_t i = blockIdx.x;
  const float* src = x + static_cast<std::size_t>(rows[i]) * dim;
  for (std::size_t c = threadIdx.x; c < dim; c += blockDim.x)
    out[i * dim + c] = src[c];
}

cudaStream_t as_stream(void* s) {
  return static_cast<cudaStream_t>(s);
}

} // namespace

result<void> embed(void* stream, const matrix& table, const std::int32_t* tokens, std::size_t n,
                   float* out) noexcept {
  if (n == 0)
    return {};
  // Tokens on x, which takes 2^31 - 1 blocks: a step may hold more than y's 65535.
  const dim3 grid(static_cast<unsigned>(n), blocks_for(table.cols, 256));
  switch (table.type) {
  case dtype::f16:
    embed_kernel<<<grid, 256, 0, as_stream(stream)>>>(static_cast<const __half*>(table.data),
                                                      table.cols, tokens, n, out);
    break;
  case dtype::bf16:
    embed_kernel<<<grid, 256, 0, as_stream(stream)>>>(static_cast<const __nv_bfloat16*>(table.data),
                                                      table.cols, tokens, n, out);
    break;
  case dtype::f32:
    embed_kernel<<<grid, 256, 0, as_stream(stream)>>>(static_cast<const float*>(table.data),
                                                      table.cols, tokens, n, out);
    break;
  default:
    return fail(errc::invalid_argument, "embed: CUDA tables are F32, F16 or BF16");
  }
  return check("embed");
}

result<void> rmsnorm(void* stream, const float* x, const float* weight, std::size_t rows,
                     std::size_t dim, float eps, float* out) noexcept {
  if (rows == 0)
    return {};
  rmsnorm_kernel<<<static_cast<unsigned>(rows), 256, 0, as_stream(stream)>>>(x, weight, dim, eps,
                                                                             out);
  return check("rmsnorm");
}

result<void> rope(void* stream, float* x, std::size_t rows, std::size_t heads, std::size_t head_dim,
                  std::size_t n_rot, const std::int32_t* positions, float base,
                  const float* freq_factors) noexcept {
  if (rows == 0)
    return {};
  rope_kernel<<<static_cast<unsigned>(rows), 128, 0, as_stream(stream)>>>(
      x, heads, head_dim, n_rot, positions, base, freq_factors);
  return check("rope");
}

result<void> kv_store(void* stream, const kv_geometry& g, std::size_t layer, const float* k,
                      const float* v, std::size_t rows, const std::int32_t* slots,
                      void* kv_base) noexcept {
  if (rows == 0)
    return {};
  auto* kv = static_cast<char*>(kv_base);
  const auto grid = static_cast<unsigned>(rows);
  switch (g.type) {
  case dtype::f16:
    kv_store_kernel<__half><<<grid, 128, 0, as_stream(stream)>>>(g, layer, k, v, slots, kv);
    break;
  case dtype::bf16:
    kv_store_kernel<__nv_bfloat16><<<grid, 128, 0, as_stream(stream)>>>(g, layer, k, v, slots, kv);
    break;
  case dtype::f32:
    kv_store_kernel<float><<<grid, 128, 0, as_stream(stream)>>>(g, layer, k, v, slots, kv);
    break;
  default:
    return fail(errc::invalid_argument, "kv_store: CUDA KV caches are F32, F16 or BF16");
  }
  return check("kv_store");
}

result<void> swiglu(void* stream, const float* gate, const float* up, std::size_t n,
                    float* out) noexcept {
  if (n == 0)
    return {};
  swiglu_kernel<<<blocks_for(n, 256), 256, 0, as_stream(stream)>>>(gate, up, n, out);
  return check("swiglu");
}

result<void> add(void* stream, float* x, const float* y, std::size_t n) noexcept {
  if (n == 0)
    return {};
  add_kernel<<<blocks_for(n, 256), 256, 0, as_stream(stream)>>>(x, y, n);
  return check("add");
}

result<void> add_bias(void* stream, float* x, const float* bias, std::size_t rows,
                      std::size_t width) noexcept {
  const std::size_t n = rows * width;
  if (n == 0)
    return {};
  add_bias_kernel<<<blocks_for(n, 256), 256, 0, as_stream(stream)>>>(x, bias, width, n);
  return check("add_bias");
}

result<void> gather_rows(void* stream, const float* x, const std::int32_t* rows, std::size_t n,
                         std::size_t dim, float* out) noexcept {
  if (n == 0)
    return {};
  gather_kernel<<<static_cast<unsigned>(n), 256, 0, as_stream(stream)>>>(x, rows, dim, out);
  return check("gather_rows");
}

} // namespace aeg::kernels::cuda
