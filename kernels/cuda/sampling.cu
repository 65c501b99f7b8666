#include "kernels/cuda/bisect.hpp"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ops.hpp"

#include <cfloat>

namespace aeg::kernels::cuda {

namespace {

constexpr unsigned threads = 1024;

// Maps floats to unsigned keys that order as the floats do.
__device__ inline unsigned key_of(float f) {
  const unsigned u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

struct block_scratch {
  float f[threads / 32];
  unsigned long long u[threads / 32];
};

__device__ float sum_all(float v, block_scratch& sh) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0)
    sh.f[threadIdx.x / 32] = v;
  __syncthreads();
  float s = 0;
  for (unsigned w = 0; w < threads / 32; ++w)
    s += sh.f[w];
  __syncthreads();
  return s;
}

__device__ unsigned long long count_all(unsigned long long v, block_scratch& sh) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0)
    sh.u[threadIdx.x / 32] = v;
  __syncthreads();
  unsigned long long s = 0;
  for (unsigned w = 0; w < threads / 32; ++w)
    s += sh.u[w];
  __syncthreads();
  return s;
}

__device__ unsigned long long max_all(unsigned long long v, block_scratch& sh) {
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long other = __shfl_xor_sync(0xffffffffu, v, o);
    v = other > v ? other : v;
  }
  if (threadIdx.x % 32 == 0)
    sh.u[threadIdx.x / 32] = v;
  __syncthreads();
  unsigned long long m = 0;
  for (unsigned w = 0; w < threads / 32; ++w)
    m = sh.u[w] > m ? sh.u[w] : m;
  __syncthreads();
  return m;
}

// A candidate is ranked by (key descending, index ascending); `above(k, i, K, I)` says whether
// (k, i) ranks at or above the cut (K, I).
__device__ inline bool at_or_above(unsigned k, unsigned i, unsigned cut_key, unsigned cut_index) {
  return k > cut_key || (k == cut_key && i <= cut_index);
}

// One block per row; the same rule as the CPU's sample_row, found by bisection instead of sorting.
__global__ void sample_kernel(const float* logits, std::size_t vocab, const sampling_row* params,
                              std::int32_t* out) {
  __shared__ block_scratch sh;
  __shared__ float prefix[threads];
  const float* l = logits + blockIdx.x * vocab;
  const sampling_row p = params[blockIdx.x];
  const unsigned n = static_cast<unsigned>(vocab);

  // Greedy (and the max for the softmax): highest key, lowest index. Packed so that one max
  // reduction finds both: key in the high bits, inverted index in the low bits.
  unsigned long long best = 0;
  for (unsigned i = threadIdx.x; i < n; i += threads) {
    const unsigned long long packed =
        (static_cast<unsigned long long>(key_of(l[i])) << 32) | (0xffffffffu - i);
    best = packed > best ? packed : best;
  }
  best = max_all(best, sh);
  const unsigned best_index = 0xffffffffu - static_cast<unsigned>(best & 0xffffffffu);
  if (p.temperature <= 0 || n == 1) {
    if (threadIdx.x == 0)
      out[blockIdx.x] = static_cast<std::int32_t>(best_index);
    return;
  }
  const float max_logit = l[best_index];
  const float inv_t = 1.0f / p.temperature;

  // The cut (key, index): every candidate ranks at or above it. Start with everything.
  unsigned cut_key = 0, cut_index = 0xffffffffu;
  auto count_at_or_above = [&](unsigned K, unsigned I) {
    unsigned long long c = 0;
    for (unsigned i = threadIdx.x; i < n; i += threads)
      c += at_or_above(key_of(l[i]), i, K, I);
    return count_all(c, sh);
  };
  auto mass_at_or_above = [&](unsigned K, unsigned I) {
    float m = 0;
    for (unsigned i = threadIdx.x; i < n; i += threads)
      if (at_or_above(key_of(l[i]), i, K, I))
        m += expf((l[i] - max_logit) * inv_t);
    return sum_all(m, sh);
  };
  // Finds the highest cut whose `measure` still reaches `goal` (first the key, then the index
  // among equal keys).
  auto highest_cut = [&](auto measure, auto goal) {
    const unsigned K =
        highest_reaching([&](unsigned k) { return measure(k, 0xffffffffu) >= goal; });
    cut_index = lowest_reaching([&](unsigned i) { return measure(K, i) >= goal; });
    cut_key = K;
  };
  if (p.top_k > 0 && static_cast<unsigned>(p.top_k) < n)
    highest_cut(count_at_or_above, static_cast<unsigned long long>(p.top_k));
  if (p.top_p < 1) {
    const unsigned K0 = cut_key, I0 = cut_index;
    // At least the top candidate (mass 1), as the CPU keeps one: a goal of 0 would be reached
    // by the empty cut and leave the row without a token.
    const float goal = fmaxf(p.top_p * mass_at_or_above(K0, I0), FLT_MIN);
    // Within the top-k candidates only: a cut never rises above the top-k one.
    auto nucleus_mass = [&](unsigned K, unsigned I) {
      float m = 0;
      for (unsigned i = threadIdx.x; i < n; i += threads) {
        const unsigned k = key_of(l[i]);
        if (at_or_above(k, i, K0, I0) && at_or_above(k, i, K, I))
          m += expf((l[i] - max_logit) * inv_t);
      }
      return sum_all(m, sh);
    };
    highest_cut(nucleus_mass, goal);
    if (!at_or_above(cut_key, cut_index, K0, I0)) { // keep the tighter of the two cuts
      cut_key = K0;
      cut_index = I0;
    }
  }

  // Lay the candidates' masses end to end in vocabulary order: each thread owns a contiguous
  // chunk, an exclusive scan over the chunks finds the one where u * total falls.
  const unsigned chunk = (n + threads - 1) / threads;
  const unsigned begin = min(n, threadIdx.x * chunk), end = min(n, begin + chunk);
  float mine = 0;
  for (unsigned i = begin; i < end; ++i)
    if (at_or_above(key_of(l[i]), i, cut_key, cut_index))
      mine += expf((l[i] - max_logit) * inv_t);
  prefix[threadIdx.x] = mine;
  __syncthreads();
  for (unsigned offset = 1; offset < threads; offset <<= 1) {
    const float add = threadIdx.x >= offset ? prefix[threadIdx.x - offset] : 0.0f;
    __syncthreads();
    prefix[threadIdx.x] += add;
    __syncthreads();
  }
  const float total = prefix[threads - 1];
  const float target = p.u * total;
  const float before = threadIdx.x > 0 ? prefix[threadIdx.x - 1] : 0.0f; // exact partition
  // Rounding can put the target at the very end: then the last candidate takes it.
  const bool last_nonempty = mine > 0 && prefix[threadIdx.x] >= total;
  if ((before <= target && target < prefix[threadIdx.x]) || (last_nonempty && target >= total)) {
    float acc = before;
    unsigned pick = n;
    for (unsigned i = begin; i < end; ++i) {
      if (!at_or_above(key_of(l[i]), i, cut_key, cut_index))
        continue;
      pick = i;
      acc += expf((l[i] - max_logit) * inv_t);
      if (acc > target)
        break;
    }
    out[blockIdx.x] = static_cast<std::int32_t>(pick);
  }
}

} // namespace

result<void> sample(void* stream, const float* logits, std::size_t rows, std::size_t vocab,
                    const sampling_row* params, std::int32_t* out) noexcept {
  if (rows == 0)
    return {};
  sample_kernel<<<static_cast<unsigned>(rows), threads, 0, static_cast<cudaStream_t>(stream)>>>(
      logits, vocab, params, out);
  return check("sample");
}

} // namespace aeg::kernels::cuda
