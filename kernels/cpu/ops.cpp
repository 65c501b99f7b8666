#include "kernels/cpu/ops.hpp"

#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/cpu/simd.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace aeg::kernels::cpu {

void embed(const matrix& table, const std::int32_t* tokens, std::size_t n, float* out) {
  const auto* base = static_cast<const std::byte*>(table.data);
  for (std::size_t i = 0; i < n; ++i) {
    const auto row = static_cast<std::size_t>(tokens[i]);
    if (is_interleaved(table.type))
      dequantize_interleaved_row(table.type, base, row, table.cols, out + i * table.cols);
    else
      dequantize_row(table.type, base + row * table.row_bytes(), out + i * table.cols, table.cols);
  }
}

namespace {

#if defined(__x86_64__)
#define AEG_AVX2_OPS AEG_AVX2_TARGET

// Σ x², in double as the portable loop sums it, four lanes at a time.
AEG_AVX2_OPS double sum_squares_avx2(const float* x, std::size_t n) {
  __m256d lo_acc = _mm256_setzero_pd(), hi_acc = _mm256_setzero_pd();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    lo_acc = _mm256_fmadd_pd(lo, lo, lo_acc);
    hi_acc = _mm256_fmadd_pd(hi, hi, hi_acc);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(lo_acc, hi_acc));
  double ss = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; ++i)
    ss += static_cast<double>(x[i]) * x[i];
  return ss;
}

AEG_AVX2_OPS __m256 swiglu8(__m256 g, __m256 u) {
  const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_div_ps(_mm256_mul_ps(g, u), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// The tail goes through the same vector code (padded), so an element's value never depends on
// where it falls in the array: a row gives the same bits alone or inside any batch.
AEG_AVX2_OPS void swiglu_avx2(const float* gate, const float* up, std::size_t n, float* out) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, swiglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i == n)
    return;
  alignas(32) float g[8] = {}, u[8] = {}, y[8];
  std::memcpy(g, gate + i, (n - i) * sizeof(float));
  std::memcpy(u, up + i, (n - i) * sizeof(float));
  _mm256_store_ps(y, swiglu8(_mm256_load_ps(g), _mm256_load_ps(u)));
  std::memcpy(out + i, y, (n - i) * sizeof(float));
}
#endif

double sum_squares(const float* x, std::size_t n) {
#if defined(__x86_64__)
  if (uses_avx2())
    return sum_squares_avx2(x, n);
#endif
  double ss = 0;
  for (std::size_t i = 0; i < n; ++i)
    ss += static_cast<double>(x[i]) * x[i];
  return ss;
}

// The angles of one rope call: every layer rotates q and k at the same positions, so a forward
// pass computes them once instead of twice per layer (double sin/cos dominate rope's cost).
// One per thread: each stream's worker keeps the last batch's.
struct rope_angles {
  std::vector<std::int32_t> positions;
  std::size_t n_rot = 0;
  float base = 0;
  std::vector<float> factors; // empty: none
  std::vector<float> cos_sin; // per row, per pair: cos, sin

  const float* for_call(const std::int32_t* pos, std::size_t rows, std::size_t rot, float b,
                        const float* f) {
    const bool same_factors =
        f == nullptr ? factors.empty()
                     : factors.size() == rot / 2 && std::equal(factors.begin(), factors.end(), f);
    if (rot != n_rot || b != base || !same_factors || positions.size() != rows ||
        !std::equal(positions.begin(), positions.end(), pos)) {
      positions.assign(pos, pos + rows);
      n_rot = rot;
      base = b;
      if (f == nullptr)
        factors.clear();
      else
        factors.assign(f, f + rot / 2);
      std::vector<double> inv_freq(rot / 2);
      for (std::size_t i = 0; i < rot / 2; ++i)
        inv_freq[i] = std::pow(static_cast<double>(b),
                               -2.0 * static_cast<double>(i) / static_cast<double>(rot)) /
                      (factors.empty() ? 1.0 : static_cast<double>(factors[i]));
      cos_sin.resize(rows * rot);
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t i = 0; i < rot / 2; ++i) {
          const double theta = static_cast<double>(pos[r]) * inv_freq[i];
          cos_sin[r * rot + 2 * i] = static_cast<float>(std::cos(theta));
          cos_sin[r * rot + 2 * i + 1] = static_cast<float>(std::sin(theta));
        }
    }
    return cos_sin.data();
  }
};

} // namespace

void rmsnorm(const float* x, const float* weight, std::size_t rows, std::size_t dim, float eps,
             float* out) {
  parallel_for(rows, 4, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) {
      const float* xr = x + r * dim;
      float* yr = out + r * dim;
      const double ss = sum_squares(xr, dim);
      const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
      for (std::size_t i = 0; i < dim; ++i)
        yr[i] = xr[i] * scale * weight[i];
    }
  });
}

void rope(float* x, std::size_t rows, std::size_t heads, std::size_t head_dim, std::size_t n_rot,
          const std::int32_t* positions, float base, const float* freq_factors) {
  thread_local rope_angles angles;
  const float* cs = angles.for_call(positions, rows, n_rot, base, freq_factors);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t h = 0; h < heads; ++h) {
      // GGUF stores llama's q/k rows permuted so that rotated pairs are adjacent.
      float* v = x + (r * heads + h) * head_dim;
      const float* a = cs + r * n_rot;
      for (std::size_t i = 0; i < n_rot; i += 2) {
        const float c = a[i], s = a[i + 1];
        const float x0 = v[i], x1 = v[i + 1];
        v[i] = x0 * c - x1 * s;
        v[i + 1] = x0 * s + x1 * c;
      }
    }
}

namespace {

#if defined(__x86_64__)
// float_to_half, 8 at a time: the same round-to-nearest-even.
__attribute__((target("avx2,f16c"))) void to_half_f16c(const float* src, std::uint16_t* dst,
                                                       std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i)
    dst[i] = float_to_half(src[i]);
}
#endif

template <class T>
void store_row(const float* src, void* dst, std::size_t n) {
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(dst, src, n * sizeof(float));
  } else {
    auto* h = static_cast<std::uint16_t*>(dst);
#if defined(__x86_64__)
    if (uses_avx2())
      return to_half_f16c(src, h, n);
#endif
    for (std::size_t i = 0; i < n; ++i)
      h[i] = float_to_half(src[i]);
  }
}

} // namespace

void kv_store(const kv_geometry& g, std::size_t layer, const float* k, const float* v,
              std::size_t rows, const std::int32_t* slots, void* kv_base) {
  auto* kv = static_cast<std::byte*>(kv_base);
  const std::size_t width = g.kv_heads * g.head_dim;
  for (std::size_t r = 0; r < rows; ++r) {
    const auto slot = static_cast<std::size_t>(slots[r]);
    std::byte* blk = kv + slot / kv_geometry::block_tokens * g.block_bytes();
    if (g.type == dtype::f32) {
      store_row<float>(k + r * width,
                       blk + g.offset(layer, false, slot % kv_geometry::block_tokens), width);
      store_row<float>(v + r * width, blk + g.offset(layer, true, slot % kv_geometry::block_tokens),
                       width);
    } else {
      store_row<std::uint16_t>(
          k + r * width, blk + g.offset(layer, false, slot % kv_geometry::block_tokens), width);
      store_row<std::uint16_t>(
          v + r * width, blk + g.offset(layer, true, slot % kv_geometry::block_tokens), width);
    }
  }
}

void swiglu(const float* gate, const float* up, std::size_t n, float* out) {
#if defined(__x86_64__)
  if (uses_avx2()) {
    parallel_for(n, 4096, [&](std::size_t begin, std::size_t end) {
      swiglu_avx2(gate + begin, up + begin, end - begin, out + begin);
    });
    return;
  }
#endif
  for (std::size_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add(float* x, const float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    x[i] += y[i];
}

void add_bias(float* x, const float* bias, std::size_t rows, std::size_t width) {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t i = 0; i < width; ++i)
      x[r * width + i] += bias[i];
}

void gather_rows(const float* x, const std::int32_t* rows, std::size_t n, std::size_t dim,
                 float* out) {
  for (std::size_t i = 0; i < n; ++i)
    std::memcpy(out + i * dim, x + static_cast<std::size_t>(rows[i]) * dim, dim * sizeof(float));
}

std::vector<std::int32_t> sampling_candidates(const float* logits, std::size_t vocab,
                                              const sampling_row& p) {
  std::vector<std::int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  if (p.temperature <= 0 || vocab == 1)
    return order;
  // Highest first, lower index first among equals: the order both backends cut in.
  auto higher = [&](std::int32_t a, std::int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  const float max_logit = *std::max_element(logits, logits + vocab);
  const float inv_t = 1.0f / p.temperature;
  auto mass = [&](std::int32_t i) { return std::exp((logits[i] - max_logit) * inv_t); };
  auto sort_prefix = [&](std::size_t n) {
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(),
                      higher);
  };
  std::size_t keep = vocab;
  if (p.top_k > 0 && static_cast<std::size_t>(p.top_k) < vocab) {
    keep = static_cast<std::size_t>(p.top_k);
    sort_prefix(keep);
  }
  if (p.top_p < 1) {
    double all = 0;
    for (std::size_t i = 0; i < keep; ++i)
      all += mass(order[i]);
    const double goal = static_cast<double>(p.top_p) * all;
    // Without top-k, sort a growing prefix until it holds the nucleus (usually a few dozen).
    std::size_t sorted = keep < vocab ? keep : std::min<std::size_t>(vocab, 64);
    for (;;) {
      if (keep == vocab)
        sort_prefix(sorted);
      double kept = 0;
      std::size_t cut = 0;
      for (; cut < sorted && kept < goal; ++cut)
        kept += mass(order[cut]);
      if (kept >= goal || sorted == keep) {
        keep = std::max<std::size_t>(cut, 1);
        break;
      }
      sorted = std::min(keep, sorted * 4);
    }
  }
  order.resize(keep);
  return order;
}

std::int32_t sample_row(const float* logits, std::size_t vocab, const sampling_row& p) {
  if (p.temperature <= 0 || vocab == 1) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best])
        best = i;
    return static_cast<std::int32_t>(best);
  }
  auto order = sampling_candidates(logits, vocab, p);
  const std::size_t keep = order.size();
  const float max_logit = *std::max_element(logits, logits + vocab);
  const float inv_t = 1.0f / p.temperature;
  auto mass = [&](std::int32_t i) { return std::exp((logits[i] - max_logit) * inv_t); };
  // Lay the candidates out in vocabulary order.
  if (keep < vocab)
    std::sort(order.begin(), order.end());
  else
    std::iota(order.begin(), order.end(), 0);
  double total = 0;
  for (std::size_t i = 0; i < keep; ++i)
    total += mass(order[i]);
  const double target = static_cast<double>(p.u) * total;
  double acc = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    acc += mass(order[i]);
    if (acc > target)
      return order[i];
  }
  return order[keep - 1];
}

void sample(const float* logits, std::size_t rows, std::size_t vocab, const sampling_row* params,
            std::int32_t* out) {
  for (std::size_t r = 0; r < rows; ++r)
    out[r] = sample_row(logits + r * vocab, vocab, params[r]);
}

} // namespace aeg::kernels::cpu
