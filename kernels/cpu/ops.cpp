#include "kernels/cpu/ops.hpp"

#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/parallel.hpp"
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
#define AEG_AVX2_OPS __attribute__((target("avx2,fma")))

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

// e^x, 8 at a time: x = n·ln2 + r with |r| ≤ ln2/2, e^r from Cephes' degree-6 polynomial for
// expf, 2^n built in the exponent bits; within a few ulp of std::exp. Beyond the range of
// normal results it gives what std::exp rounds to there, or nearly: 0 below -87.3, ∞ above 88.7.
AEG_AVX2_OPS __m256 exp8(__m256 x_in) {
  // The operands in this order let a NaN through (min/max return the second one then).
  const __m256 x =
      _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x_in));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x); // ln2 in two parts
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23)));
  e = _mm256_blendv_ps(e, _mm256_setzero_ps(),
                       _mm256_cmp_ps(x_in, _mm256_set1_ps(-87.33f), _CMP_LT_OQ));
  return _mm256_blendv_ps(e, _mm256_set1_ps(INFINITY),
                          _mm256_cmp_ps(x_in, _mm256_set1_ps(88.72f), _CMP_GT_OQ));
}

AEG_AVX2_OPS __m256 swiglu8(__m256 g, __m256 u) {
  const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_div_ps(_mm256_mul_ps(g, u), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// x[i] = e^(x[i] − shift) for i < n; returns their sum. Padded like swiglu's tail.
AEG_AVX2_OPS float exp_shifted_avx2(float* x, std::size_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 sum = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(x + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  if (i < n) {
    alignas(32) float tail[8];
    std::fill(tail, tail + 8, shift); // e^0 in the padding, never summed
    std::memcpy(tail, x + i, (n - i) * sizeof(float));
    _mm256_store_ps(tail, exp8(_mm256_sub_ps(_mm256_load_ps(tail), s)));
    for (std::size_t j = 0; j < n - i; ++j)
      total += (x[i + j] = tail[j]);
  }
  return total;
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
  std::vector<float> cos_sin; // per row, per pair: cos, sin

  const float* for_call(const std::int32_t* pos, std::size_t rows, std::size_t rot, float b) {
    if (rot != n_rot || b != base || positions.size() != rows ||
        !std::equal(positions.begin(), positions.end(), pos)) {
      positions.assign(pos, pos + rows);
      n_rot = rot;
      base = b;
      std::vector<double> inv_freq(rot / 2);
      for (std::size_t i = 0; i < rot / 2; ++i)
        inv_freq[i] = std::pow(static_cast<double>(b),
                               -2.0 * static_cast<double>(i) / static_cast<double>(rot));
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
          const std::int32_t* positions, float base) {
  thread_local rope_angles angles;
  const float* cs = angles.for_call(positions, rows, n_rot, base);
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

template <class T>
float load(const void* p, std::size_t i) {
  if constexpr (std::is_same_v<T, float>)
    return static_cast<const float*>(p)[i];
  else
    return half_to_float(static_cast<const std::uint16_t*>(p)[i]);
}

// One query row and head against keys 0..n-1 of its sequence: softmax(q·K / √d)·V. The vector
// and portable versions differ only in summation order.
struct head_view {
  const std::byte* kv;
  const std::int32_t* table; // the sequence's blocks
  std::size_t block_bytes, k_offset, v_offset, token_bytes, head_offset;
  const std::byte* k(std::size_t t) const {
    return kv + static_cast<std::size_t>(table[t / kv_geometry::block_tokens]) * block_bytes +
           k_offset + t % kv_geometry::block_tokens * token_bytes + head_offset;
  }
  const std::byte* v(std::size_t t) const {
    return kv + static_cast<std::size_t>(table[t / kv_geometry::block_tokens]) * block_bytes +
           v_offset + t % kv_geometry::block_tokens * token_bytes + head_offset;
  }
};

template <class T>
void attend_portable(const head_view& h, const float* q, std::size_t hd, std::size_t n, float scale,
                     float* scores, float* out) {
  float max_score = -INFINITY;
  for (std::size_t t = 0; t < n; ++t) {
    const std::byte* k = h.k(t);
    float s = 0;
    for (std::size_t d = 0; d < hd; ++d)
      s += q[d] * load<T>(k, d);
    scores[t] = s * scale;
    max_score = std::max(max_score, scores[t]);
  }
  float total = 0;
  for (std::size_t t = 0; t < n; ++t)
    total += (scores[t] = std::exp(scores[t] - max_score));
  std::fill(out, out + hd, 0.0f);
  for (std::size_t t = 0; t < n; ++t) {
    const std::byte* v = h.v(t);
    for (std::size_t d = 0; d < hd; ++d)
      out[d] += scores[t] * load<T>(v, d);
  }
  const float inv = 1.0f / total;
  for (std::size_t d = 0; d < hd; ++d)
    out[d] *= inv;
}

#if defined(__x86_64__)

#define AEG_AVX2 __attribute__((target("avx2,fma,f16c")))

template <class T>
AEG_AVX2 inline __m256 load8(const std::byte* p, std::size_t d) {
  if constexpr (std::is_same_v<T, float>)
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p) + d);
  else
    return _mm256_cvtph_ps(_mm_loadu_si128(
        reinterpret_cast<const __m128i*>(reinterpret_cast<const std::uint16_t*>(p) + d)));
}

AEG_AVX2 inline float hsum8(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  return _mm_cvtss_f32(_mm_add_ss(lo, _mm_movehdup_ps(lo)));
}

// out[d .. d + 8C) = inv · Σ_t scores[t] · V[t][d .. d + 8C), with the C accumulators in registers.
template <class T, int C>
AEG_AVX2 void accumulate_values(const head_view& h, const float* scores, std::size_t n,
                                std::size_t d, __m256 inv, float* out) {
  __m256 acc[C];
  for (int c = 0; c < C; ++c)
    acc[c] = _mm256_setzero_ps();
  for (std::size_t t = 0; t < n; ++t) {
    const __m256 p = _mm256_set1_ps(scores[t]);
    const std::byte* v = h.v(t);
    for (int c = 0; c < C; ++c)
      acc[c] = _mm256_fmadd_ps(p, load8<T>(v, d + 8 * c), acc[c]);
  }
  for (int c = 0; c < C; ++c)
    _mm256_storeu_ps(out + d + 8 * c, _mm256_mul_ps(acc[c], inv));
}

// head_dim a multiple of 8 and at most 256 (checked by the caller). Four keys at a time, and all
// of a head's dims at once for V, so that independent FMA chains hide each other's latency.
template <class T>
AEG_AVX2 void attend_avx2(const head_view& h, const float* q, std::size_t hd, std::size_t n,
                          float scale, float* scores, float* out) {
  float max_score = -INFINITY;
  std::size_t t = 0;
  for (; t + 4 <= n; t += 4) {
    const std::byte* k0 = h.k(t);
    const std::byte* k1 = h.k(t + 1);
    const std::byte* k2 = h.k(t + 2);
    const std::byte* k3 = h.k(t + 3);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (std::size_t d = 0; d < hd; d += 8) {
      const __m256 qd = _mm256_loadu_ps(q + d);
      a0 = _mm256_fmadd_ps(qd, load8<T>(k0, d), a0);
      a1 = _mm256_fmadd_ps(qd, load8<T>(k1, d), a1);
      a2 = _mm256_fmadd_ps(qd, load8<T>(k2, d), a2);
      a3 = _mm256_fmadd_ps(qd, load8<T>(k3, d), a3);
    }
    scores[t] = hsum8(a0) * scale;
    scores[t + 1] = hsum8(a1) * scale;
    scores[t + 2] = hsum8(a2) * scale;
    scores[t + 3] = hsum8(a3) * scale;
    max_score = std::max({max_score, scores[t], scores[t + 1], scores[t + 2], scores[t + 3]});
  }
  for (; t < n; ++t) {
    const std::byte* k = h.k(t);
    __m256 acc = _mm256_setzero_ps();
    for (std::size_t d = 0; d < hd; d += 8)
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load8<T>(k, d), acc);
    scores[t] = hsum8(acc) * scale;
    max_score = std::max(max_score, scores[t]);
  }
  const float total = exp_shifted_avx2(scores, n, max_score);
  const __m256 inv = _mm256_set1_ps(1.0f / total);
  for (std::size_t d = 0; d < hd; d += 64) {
    if (hd - d >= 64)
      accumulate_values<T, 8>(h, scores, n, d, inv, out);
    else
      for (std::size_t c = d; c < hd; c += 8) // head dims that are not multiples of 64
        accumulate_values<T, 1>(h, scores, n, c, inv, out);
  }
}

#endif

template <class T>
void attention_impl(const kv_geometry& g, std::size_t layer, const float* q, std::size_t rows,
                    std::size_t heads, const std::int32_t* positions, const std::int32_t* row_seq,
                    const std::int32_t* block_tables, std::size_t max_blocks, const void* kv_base,
                    float scale, float* out) {
  const std::size_t hd = g.head_dim, group = heads / g.kv_heads;
#if defined(__x86_64__)
  const bool vectorized = uses_avx2() && hd % 8 == 0 && hd <= 256;
#endif
  parallel_for(rows * heads, 1, [&](std::size_t begin, std::size_t end) {
    std::vector<float> scores;
    for (std::size_t item = begin; item < end; ++item) {
      const std::size_t r = item / heads, h = item % heads;
      const std::size_t n = static_cast<std::size_t>(positions[r]) + 1; // causal: keys 0..pos
      const head_view view{static_cast<const std::byte*>(kv_base),
                           block_tables + static_cast<std::size_t>(row_seq[r]) * max_blocks,
                           g.block_bytes(),
                           g.offset(layer, false, 0),
                           g.offset(layer, true, 0),
                           g.token_bytes(),
                           h / group * hd * g.element_bytes()};
      scores.resize(n);
      const float* qr = q + (r * heads + h) * hd;
      float* o = out + (r * heads + h) * hd;
#if defined(__x86_64__)
      if (vectorized) {
        attend_avx2<T>(view, qr, hd, n, scale, scores.data(), o);
        continue;
      }
#endif
      attend_portable<T>(view, qr, hd, n, scale, scores.data(), o);
    }
  });
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

void attention(const kv_geometry& g, std::size_t layer, const float* q, std::size_t rows,
               std::size_t heads, const std::int32_t* positions, const std::int32_t* row_seq,
               const std::int32_t* block_tables, std::size_t max_blocks, const void* kv_base,
               float scale, float* out) {
  if (g.type == dtype::f32)
    attention_impl<float>(g, layer, q, rows, heads, positions, row_seq, block_tables, max_blocks,
                          kv_base, scale, out);
  else
    attention_impl<std::uint16_t>(g, layer, q, rows, heads, positions, row_seq, block_tables,
                                  max_blocks, kv_base, scale, out);
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

void gather_rows(const float* x, const std::int32_t* rows, std::size_t n, std::size_t dim,
                 float* out) {
  for (std::size_t i = 0; i < n; ++i)
    std::memcpy(out + i * dim, x + static_cast<std::size_t>(rows[i]) * dim, dim * sizeof(float));
}

std::int32_t sample_row(const float* logits, std::size_t vocab, const sampling_row& p) {
  if (p.temperature <= 0 || vocab == 1) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best])
        best = i;
    return static_cast<std::int32_t>(best);
  }
  // Highest first, lower index first among equals: the order both backends cut in.
  auto higher = [&](std::int32_t a, std::int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::vector<std::int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
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
  double total = 0;
  // Lay the candidates out in vocabulary order.
  if (keep < vocab)
    std::sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep));
  else
    std::iota(order.begin(), order.end(), 0);
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
