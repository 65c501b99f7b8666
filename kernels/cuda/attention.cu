// Causal attention over the paged KV cache, flash-style, with the structure of the CPU kernel
// (kernels/cpu/attention.cpp): a thread block takes a tile of queries that read the same keys
// (the heads of one KV group, times consecutive rows of one sequence), stages each KV block (16
// tokens) of their KV head in shared memory once for all of them, and keeps an online softmax per
// query, so no row of scores is kept and a prompt's KV is read once per tile rather than once per
// row and head. When the tiles alone cannot fill the GPU (decoding few sequences over long
// contexts), the keys are also split across blocks, each keeping the softmax state of its own
// span, and a second kernel merges the spans in order.

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ops.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

namespace aeg::kernels::cuda {

namespace {

constexpr unsigned warps = 4;
constexpr unsigned threads = warps * 32;
constexpr std::size_t max_head_dim = 256;
constexpr unsigned dims_per_lane = max_head_dim / 32;
constexpr std::size_t tile_queries = 16;                    // rows × heads of one tile
constexpr unsigned queries_per_warp = tile_queries / warps; // a warp keeps these in registers
constexpr std::size_t block_tokens = kv_geometry::block_tokens;
// A split's keys, at least: shorter spans cost more in merging than they gain in parallelism.
constexpr std::size_t min_split_keys = 64;

__device__ inline float load(const float* p, std::size_t i) {
  return p[i];
}
__device__ inline float load(const __half* p, std::size_t i) {
  return __half2float(p[i]);
}
__device__ inline float load(const __nv_bfloat16* p, std::size_t i) {
  return __bfloat162float(p[i]);
}

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// What every block of one call shares.
struct call {
  kv_geometry g;
  std::size_t layer, rows, heads, heads_per_tile, rows_per_tile;
  const float* q;
  const std::int32_t* positions;
  const std::int32_t* row_seq;
  const std::int32_t* block_tables;
  std::size_t max_blocks;
  const char* kv;
  float scale;
  std::size_t span;   // keys per split (a multiple of a KV block); every key when not split
  std::size_t splits; // key spans, one per block along z
  float* out;
  float* partial; // [row][head][split][max, sum, acc[head_dim]] when split
};

// One query's online-softmax state, its dimensions spread over a warp's lanes (lane + 32·i).
struct query_state {
  float q[dims_per_lane];
  float acc[dims_per_lane];
  float max, sum;
  std::size_t row, head, keys; // keys: its causal count (position + 1); 0 for no query
};

// The rows [first, last) of one sequence, for the block's KV head and split. Every thread of the
// block runs it (the KV staging is shared).
template <class T>
__device__ void attend_run(const call& c, std::size_t first, std::size_t last,
                           float (*ks)[max_head_dim], float (*vs)[max_head_dim]) {
  const std::size_t hd = c.g.head_dim, group = c.heads / c.g.kv_heads;
  const std::size_t first_head = blockIdx.y * c.heads_per_tile, kv_head = first_head / group;
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::size_t queries = (last - first) * c.heads_per_tile;
  const std::size_t lo = blockIdx.z * c.span; // this split's keys: [lo, lo + span)
  query_state st[queries_per_warp];
  std::size_t run_keys = 0; // the most keys any row of the run reads
#pragma unroll
  for (unsigned i = 0; i < queries_per_warp; ++i) {
    const std::size_t qi = warp + i * warps;
    st[i].keys = 0;
    st[i].max = -INFINITY;
    st[i].sum = 0;
    if (qi >= queries)
      continue;
    st[i].row = first + qi / c.heads_per_tile;
    st[i].head = first_head + qi % c.heads_per_tile;
    st[i].keys = static_cast<std::size_t>(c.positions[st[i].row]) + 1;
    const float* qrow = c.q + (st[i].row * c.heads + st[i].head) * hd;
#pragma unroll
    for (unsigned d = 0; d < dims_per_lane; ++d) {
      const std::size_t dim = lane + 32 * d;
      st[i].q[d] = dim < hd ? qrow[dim] * c.scale : 0.0f;
      st[i].acc[d] = 0;
    }
  }
  for (std::size_t r = first; r < last; ++r)
    run_keys = max(run_keys, static_cast<std::size_t>(c.positions[r]) + 1);
  // The last split takes every key after it: a host's hint that undercounts the keys costs
  // parallelism, never keys.
  const std::size_t hi = blockIdx.z + 1 == c.splits ? run_keys : min(run_keys, lo + c.span);
  const std::int32_t* table =
      c.block_tables + static_cast<std::size_t>(c.row_seq[first]) * c.max_blocks;
  const std::size_t token_bytes = c.g.token_bytes(), head_bytes = kv_head * hd * sizeof(T);
  for (std::size_t start = lo; start < hi; start += block_tokens) {
    // Stage the block's keys and values of this KV head as floats, once for every query.
    const char* blk =
        c.kv + static_cast<std::size_t>(table[start / block_tokens]) * c.g.block_bytes();
    const char* k0 = blk + c.g.offset(c.layer, false, 0) + head_bytes;
    const char* v0 = blk + c.g.offset(c.layer, true, 0) + head_bytes;
    __syncthreads();                                 // the previous block is no longer read
    const unsigned dims = static_cast<unsigned>(hd); // 32-bit: cheaper division
    for (unsigned e = threadIdx.x; e < block_tokens * dims; e += threads) {
      const unsigned t = e / dims, d = e % dims;
      ks[t][d] = load(reinterpret_cast<const T*>(k0 + t * token_bytes), d);
      vs[t][d] = load(reinterpret_cast<const T*>(v0 + t * token_bytes), d);
    }
    __syncthreads();
#pragma unroll
    for (unsigned i = 0; i < queries_per_warp; ++i) {
      auto& s = st[i];
      if (start >= s.keys) // past this query's keys (or no query): nothing of it here
        continue;
      // Keys past the query's position are masked; their slots may hold anything (even NaN
      // bits of a block's unused tail), so they are skipped, not weighted by zero.
      const std::size_t valid = min(block_tokens, s.keys - start);
      float score[block_tokens];
      float block_max = -INFINITY;
#pragma unroll
      for (std::size_t t = 0; t < block_tokens; ++t) {
        if (t >= valid)
          break;
        float partial = 0;
#pragma unroll
        for (unsigned d = 0; d < dims_per_lane; ++d)
          if (lane + 32 * d < hd)
            partial += s.q[d] * ks[t][lane + 32 * d];
        score[t] = warp_sum(partial);
        block_max = fmaxf(block_max, score[t]);
      }
      const float new_max = fmaxf(s.max, block_max);
      const float rescale = expf(s.max - new_max); // 0 on the first block (max was -inf)
      s.sum *= rescale;
#pragma unroll
      for (unsigned d = 0; d < dims_per_lane; ++d)
        s.acc[d] *= rescale;
#pragma unroll
      for (std::size_t t = 0; t < block_tokens; ++t) {
        if (t >= valid)
          break;
        const float p = expf(score[t] - new_max);
        s.sum += p;
#pragma unroll
        for (unsigned d = 0; d < dims_per_lane; ++d)
          if (lane + 32 * d < hd)
            s.acc[d] += p * vs[t][lane + 32 * d];
      }
      s.max = new_max;
    }
  }
  // Results: normalized when the keys are not split, else this span's state for the merge.
#pragma unroll
  for (unsigned i = 0; i < queries_per_warp; ++i) {
    const auto& s = st[i];
    if (s.keys <= lo) // no query, or none of its keys in this split
      continue;
    const std::size_t query = s.row * c.heads + s.head;
    if (c.splits == 1) {
#pragma unroll
      for (unsigned d = 0; d < dims_per_lane; ++d)
        if (lane + 32 * d < hd)
          c.out[query * hd + lane + 32 * d] = s.acc[d] / s.sum;
      continue;
    }
    float* p = c.partial + (query * c.splits + blockIdx.z) * (hd + 2);
    if (lane == 0) {
      p[0] = s.max;
      p[1] = s.sum;
    }
#pragma unroll
    for (unsigned d = 0; d < dims_per_lane; ++d)
      if (lane + 32 * d < hd)
        p[2 + lane + 32 * d] = s.acc[d];
  }
}

// Block (x, y, z): rows [x·rows_per_tile, ...) cut into runs of one sequence each, heads
// [y·heads_per_tile, ...) of one KV group, keys [z·span, (z + 1)·span).
template <class T>
__global__ void __launch_bounds__(threads) attention_kernel(call c) {
  __shared__ float ks[block_tokens][max_head_dim];
  __shared__ float vs[block_tokens][max_head_dim];
  const std::size_t begin = blockIdx.x * c.rows_per_tile;
  const std::size_t end = min(c.rows, begin + c.rows_per_tile);
  for (std::size_t first = begin; first < end;) {
    std::size_t last = first + 1;
    while (last < end && c.row_seq[last] == c.row_seq[first])
      ++last;
    attend_run<T>(c, first, last, ks, vs);
    first = last;
  }
}

// One warp per (row, head): merges the states of the splits that hold its keys, in order.
__global__ void merge_kernel(call c) {
  const std::size_t row = blockIdx.x, head = blockIdx.y, hd = c.g.head_dim;
  const std::size_t query = row * c.heads + head, splits = c.splits;
  const std::size_t keys = static_cast<std::size_t>(c.positions[row]) + 1;
  const std::size_t used = min(splits, (keys + c.span - 1) / c.span); // the last takes the rest
  const float* p = c.partial + query * splits * (hd + 2);
  float top = -INFINITY;
  for (std::size_t z = 0; z < used; ++z)
    top = fmaxf(top, p[z * (hd + 2)]);
  // Each split's weight once, for the sum and for every dimension this lane holds.
  float sum = 0, acc[dims_per_lane] = {};
  for (std::size_t z = 0; z < used; ++z) {
    const float* state = p + z * (hd + 2);
    const float w = expf(state[0] - top);
    sum += state[1] * w;
#pragma unroll
    for (unsigned d = 0; d < dims_per_lane; ++d)
      if (threadIdx.x + 32 * d < hd)
        acc[d] += state[2 + threadIdx.x + 32 * d] * w;
  }
#pragma unroll
  for (unsigned d = 0; d < dims_per_lane; ++d)
    if (threadIdx.x + 32 * d < hd)
      c.out[query * hd + threadIdx.x + 32 * d] = acc[d] / sum;
}

// Heads per tile: the whole KV group when it fits a tile, else its largest divisor that does.
std::size_t heads_per_tile(std::size_t group) {
  std::size_t h = std::min(group, tile_queries);
  while (group % h != 0)
    --h;
  return h;
}

// Room in `scratch` for `bytes`. Stream-ordered: a buffer outgrown is freed after the work
// already enqueued that reads it.
result<void> grow(cudaStream_t s, device_scratch& scratch, std::size_t bytes) {
  if (scratch.bytes >= bytes)
    return {};
  const std::size_t want = std::max({bytes, 2 * scratch.bytes, std::size_t{1} << 20});
  if (scratch.data) {
    AEG_TRY(check("attention scratch", cudaFreeAsync(scratch.data, s)));
    scratch = {};
  }
  AEG_TRY(check("attention scratch", cudaMallocAsync(&scratch.data, want, s)));
  scratch.bytes = want;
  return {};
}

// Key splits for `blocks` blocks over at most `keys` keys: none while the blocks alone keep two
// per multiprocessor busy, else enough for that, each at least a few KV blocks long.
std::size_t splits_for(std::size_t blocks, std::size_t keys) {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError(); // not worth failing the op for: no split
    return 1;
  }
  const std::size_t want = 2 * static_cast<std::size_t>(sms);
  if (blocks >= want)
    return 1;
  return std::max<std::size_t>(1, std::min((want + blocks - 1) / blocks, keys / min_split_keys));
}

template <class T>
result<void> launch(cudaStream_t s, call& c, std::size_t keys, device_scratch& scratch) {
  const std::size_t tiles = (c.rows + c.rows_per_tile - 1) / c.rows_per_tile;
  const std::size_t groups = c.heads / c.heads_per_tile;
  std::size_t splits = splits_for(tiles * groups, keys);
  c.span = ((keys + splits - 1) / splits + block_tokens - 1) / block_tokens * block_tokens;
  splits = (keys + c.span - 1) / c.span;
  // Without room for the splits' states (a device without stream-ordered allocation, or none
  // left), the keys are not split: slower, not wrong.
  if (splits > 1 &&
      !grow(s, scratch, c.rows * c.heads * splits * (c.g.head_dim + 2) * sizeof(float)))
    splits = 1;
  c.splits = splits;
  c.partial = static_cast<float*>(scratch.data);
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(groups),
                  static_cast<unsigned>(splits));
  attention_kernel<T><<<grid, threads, 0, s>>>(c);
  AEG_TRY(check("attention"));
  if (splits > 1)
    merge_kernel<<<dim3(static_cast<unsigned>(c.rows), static_cast<unsigned>(c.heads)), 32, 0, s>>>(
        c);
  return check("attention merge");
}

} // namespace

result<void> attention(void* stream, const kv_geometry& g, std::size_t layer, const float* q,
                       std::size_t rows, std::size_t heads, const std::int32_t* positions,
                       const std::int32_t* row_seq, const std::int32_t* block_tables,
                       std::size_t max_blocks, const void* kv_base, float scale, float* out,
                       attention_hint hint, device_scratch& scratch) noexcept {
  if (rows == 0 || heads == 0)
    return {};
  if (max_blocks == 0)
    return fail(errc::invalid_argument, "attention: the block tables have no room for a block");
  if (g.head_dim > max_head_dim)
    return fail(errc::invalid_argument, "attention: CUDA kernel supports head_dim up to 256");
  const std::size_t hpt = heads_per_tile(heads / g.kv_heads);
  // A tile takes consecutive rows of one sequence: as many as a sequence has on average (one
  // when decoding, so that decode rows of different sequences do not queue in one block).
  const std::size_t per_seq =
      hint.sequences ? (rows + hint.sequences - 1) / hint.sequences : tile_queries;
  const std::size_t table_keys = max_blocks * block_tokens;
  const std::size_t keys = hint.longest ? std::min(hint.longest, table_keys) : table_keys;
  call c{g,          layer,
         rows,       heads,
         hpt,        std::clamp<std::size_t>(per_seq, 1, tile_queries / hpt),
         q,          positions,
         row_seq,    block_tables,
         max_blocks, static_cast<const char*>(kv_base),
         scale,      0,
         1,          out,
         nullptr};
  auto s = static_cast<cudaStream_t>(stream);
  switch (g.type) {
  case dtype::f16:
    return launch<__half>(s, c, keys, scratch);
  case dtype::bf16:
    return launch<__nv_bfloat16>(s, c, keys, scratch);
  case dtype::f32:
    return launch<float>(s, c, keys, scratch);
  default:
    return fail(errc::invalid_argument, "attention: CUDA KV caches are F32, F16 or BF16");
  }
}

void release(void* stream, device_scratch& scratch) noexcept {
  // A failure here is not this thread's next op's: clear it from the last error.
  if (scratch.data && cudaFreeAsync(scratch.data, static_cast<cudaStream_t>(stream)) != cudaSuccess)
    cudaGetLastError();
  scratch = {};
}

} // namespace aeg::kernels::cuda
