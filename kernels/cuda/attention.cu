#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ops.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace aeg::kernels::cuda {

namespace {

constexpr unsigned threads = 128;
constexpr std::size_t max_head_dim = 256;
constexpr unsigned dims_per_thread = max_head_dim / threads;

__device__ inline float load(const float* p, std::size_t i) {
  return p[i];
}
__device__ inline float load(const __half* p, std::size_t i) {
  return __half2float(p[i]);
}
__device__ inline float load(const __nv_bfloat16* p, std::size_t i) {
  return __bfloat162float(p[i]);
}

__device__ float block_max(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (threadIdx.x % 32 == 0)
    shared[threadIdx.x / 32] = v;
  __syncthreads();
  float m = shared[0];
  for (unsigned w = 1; w < threads / 32; ++w)
    m = fmaxf(m, shared[w]);
  __syncthreads();
  return m;
}

__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0)
    shared[threadIdx.x / 32] = v;
  __syncthreads();
  float s = 0;
  for (unsigned w = 0; w < threads / 32; ++w)
    s += shared[w];
  __syncthreads();
  return s;
}

// One block per (query row, head): keys are visited in tiles of `threads`, one key per thread,
// with a running max and sum (online softmax), so no score buffer grows with the context.
template <class T>
__global__ void attention_kernel(kv_geometry g, std::size_t layer, const float* q,
                                 std::size_t heads, const std::int32_t* positions,
                                 const std::int32_t* row_seq, const std::int32_t* block_tables,
                                 std::size_t max_blocks, const char* kv, float scale, float* out) {
  __shared__ float qs[max_head_dim];
  __shared__ float probs[threads];
  __shared__ float reduce[threads / 32];
  const std::size_t r = blockIdx.x, h = blockIdx.y;
  const std::size_t hd = g.head_dim, kvh = h / (heads / g.kv_heads);
  const std::size_t n = static_cast<std::size_t>(positions[r]) + 1;
  const std::int32_t* table = block_tables + static_cast<std::size_t>(row_seq[r]) * max_blocks;
  const std::size_t block_bytes = g.block_bytes();
  for (std::size_t d = threadIdx.x; d < hd; d += threads)
    qs[d] = q[(r * heads + h) * hd + d];
  __syncthreads();

  float acc[dims_per_thread] = {};
  float running_max = -INFINITY, running_sum = 0;
  for (std::size_t tile = 0; tile < n; tile += threads) {
    const std::size_t t = tile + threadIdx.x;
    float s = -INFINITY;
    if (t < n) {
      const char* blk =
          kv + static_cast<std::size_t>(table[t / kv_geometry::block_tokens]) * block_bytes;
      const T* k =
          reinterpret_cast<const T*>(blk + g.offset(layer, false, t % kv_geometry::block_tokens)) +
          kvh * hd;
      s = 0;
      for (std::size_t d = 0; d < hd; ++d)
        s += qs[d] * load(k, d);
      s *= scale;
    }
    const float new_max = fmaxf(running_max, block_max(s, reduce));
    const float p = t < n ? expf(s - new_max) : 0.0f;
    const float rescale = expf(running_max - new_max); // 0 on the first tile
    running_sum = running_sum * rescale + block_sum(p, reduce);
    running_max = new_max;
    probs[threadIdx.x] = p;
    __syncthreads();
    const std::size_t tile_n = min(static_cast<std::size_t>(threads), n - tile);
    for (unsigned i = 0; i < dims_per_thread; ++i) {
      const std::size_t d = threadIdx.x + i * threads;
      if (d >= hd)
        break;
      float a = acc[i] * rescale;
      for (std::size_t j = 0; j < tile_n; ++j) {
        const std::size_t tt = tile + j;
        const char* blk =
            kv + static_cast<std::size_t>(table[tt / kv_geometry::block_tokens]) * block_bytes;
        const T* v = reinterpret_cast<const T*>(
                         blk + g.offset(layer, true, tt % kv_geometry::block_tokens)) +
                     kvh * hd;
        a += probs[j] * load(v, d);
      }
      acc[i] = a;
    }
    __syncthreads();
  }
  for (unsigned i = 0; i < dims_per_thread; ++i) {
    const std::size_t d = threadIdx.x + i * threads;
    if (d < hd)
      out[(r * heads + h) * hd + d] = acc[i] / running_sum;
  }
}

} // namespace

result<void> attention(void* stream, const kv_geometry& g, std::size_t layer, const float* q,
                       std::size_t rows, std::size_t heads, const std::int32_t* positions,
                       const std::int32_t* row_seq, const std::int32_t* block_tables,
                       std::size_t max_blocks, const void* kv_base, float scale,
                       float* out) noexcept {
  if (rows == 0)
    return {};
  if (g.head_dim > max_head_dim)
    return fail(errc::invalid_argument, "attention: CUDA kernel supports head_dim up to 256");
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(heads));
  const auto* kv = static_cast<const char*>(kv_base);
  auto s = static_cast<cudaStream_t>(stream);
  switch (g.type) {
  case dtype::f16:
    attention_kernel<__half><<<grid, threads, 0, s>>>(g, layer, q, heads, positions, row_seq,
                                                      block_tables, max_blocks, kv, scale, out);
    break;
  case dtype::bf16:
    attention_kernel<__nv_bfloat16><<<grid, threads, 0, s>>>(
        g, layer, q, heads, positions, row_seq, block_tables, max_blocks, kv, scale, out);
    break;
  case dtype::f32:
    attention_kernel<float><<<grid, threads, 0, s>>>(g, layer, q, heads, positions, row_seq,
                                                     block_tables, max_blocks, kv, scale, out);
    break;
  default:
    return fail(errc::invalid_argument, "attention: CUDA KV caches are F32, F16 or BF16");
  }
  return check("attention");
}

} // namespace aeg::kernels::cuda
