#pragma once

// The per-block vector steps of the CPU's flash attention (kernels/cpu/attention.cpp), one set
// per instruction set: a KV block's rows as floats, one query's 16 scores over them, its
// online-softmax step and the weighted values it gathers. A query's arithmetic is whatever its
// set's steps do, never what else the tile holds. Included by attention.cpp alone.

#if defined(__x86_64__)

#include "kernels/cpu/simd.hpp"
#include "kernels/kv_geometry.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace aeg::kernels::cpu::attention_steps {

constexpr std::size_t block_tokens = kv_geometry::block_tokens;

// A block's rows as floats: the cache itself for f32, a widened copy for f16.
template <class T>
struct block_rows {
  alignas(64) float buffer[block_tokens * 256];
  const float* row[block_tokens];
};

// Asks for a block's 16 rows of `bytes` each, `stride` apart, to be brought into the cache.
AEG_AVX2_TARGET inline void prefetch_rows(const std::byte* first, std::size_t stride,
                                          std::size_t bytes) {
  for (std::size_t t = 0; t < block_tokens; ++t)
    for (std::size_t off = 0; off < bytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(first + t * stride + off), _MM_HINT_T0);
}

// The steps 8 lanes wide (AVX2, head sizes that are multiples of 8).
struct avx2 {
  // T's rows of a block as floats, 8 values an instruction.
  template <class T>
  AEG_AVX2_TARGET static void load(block_rows<T>& rows, const std::byte* first,
                                   std::size_t token_bytes, std::size_t hd, std::size_t n) {
    for (std::size_t t = 0; t < n; ++t) {
      const std::byte* src = first + t * token_bytes;
      if constexpr (std::is_same_v<T, float>) {
        rows.row[t] = reinterpret_cast<const float*>(src);
      } else {
        float* dst = rows.buffer + t * hd;
        const auto* h = reinterpret_cast<const std::uint16_t*>(src);
        for (std::size_t d = 0; d < hd; d += 8)
          _mm256_store_ps(
              dst + d, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + d))));
        rows.row[t] = dst;
      }
    }
  }

  // q · row[t] for eight keys.
  AEG_AVX2_TARGET static __m256 dot8(const float* q, const float* const* row, std::size_t hd) {
    __m256 a[8];
    for (auto& x : a)
      x = _mm256_setzero_ps();
    for (std::size_t d = 0; d < hd; d += 8) {
      const __m256 qd = _mm256_loadu_ps(q + d);
      for (int j = 0; j < 8; ++j)
        a[j] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(row[j] + d), a[j]);
    }
    return hsum8x8(a);
  }

  // One query's scores for the block's 16 slots into `s`; slots from `valid` on (later tokens,
  // or none yet) are -∞. Rows past `valid` must point at loaded rows.
  AEG_AVX2_TARGET static void score(const float* q, std::size_t hd, float scale, std::size_t valid,
                                    const float* const* krow, float* s) {
    const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 vs = _mm256_set1_ps(scale), minus_inf = _mm256_set1_ps(-INFINITY);
    const __m256 n = _mm256_set1_ps(static_cast<float>(valid));
    const __m256 lo = _mm256_mul_ps(dot8(q, krow, hd), vs);
    const __m256 hi = valid > 8 ? _mm256_mul_ps(dot8(q, krow + 8, hd), vs) : minus_inf;
    _mm256_storeu_ps(s, _mm256_blendv_ps(lo, minus_inf, _mm256_cmp_ps(lane, n, _CMP_GE_OQ)));
    _mm256_storeu_ps(s + 8, _mm256_blendv_ps(hi, minus_inf,
                                             _mm256_cmp_ps(_mm256_add_ps(lane, _mm256_set1_ps(8)),
                                                           n, _CMP_GE_OQ)));
  }

  // The online-softmax step of one query over a block's scores `s`: they become their weights
  // e^(s − new max), and max and sum move on. Returns e^(old max − new max), the factor for the
  // values gathered so far: 0 for an empty state (−∞), exactly 1 when the max stays.
  AEG_AVX2_TARGET static float softmax(float* s, float& max, float& sum) {
    const __m256 lo = _mm256_loadu_ps(s), hi = _mm256_loadu_ps(s + 8);
    const float new_max = std::max(max, hmax8(_mm256_max_ps(lo, hi)));
    const __m256 m = _mm256_set1_ps(new_max);
    const float correction = _mm256_cvtss_f32(exp8(_mm256_set1_ps(max - new_max)));
    const __m256 plo = exp8(_mm256_sub_ps(lo, m)), phi = exp8(_mm256_sub_ps(hi, m));
    _mm256_storeu_ps(s, plo);
    _mm256_storeu_ps(s + 8, phi);
    sum = sum * correction + hsum8(_mm256_add_ps(plo, phi));
    max = new_max;
    return correction;
  }

  // acc[d .. d + 8C) = acc·correction + Σ_{t < n} p[t]·row[t][d .. d + 8C), in registers.
  template <int C>
  AEG_AVX2_TARGET static void gather(float* acc, __m256 correction, const float* p,
                                     const float* const* row, std::size_t n, std::size_t d) {
    __m256 a[C];
    for (int c = 0; c < C; ++c)
      a[c] = _mm256_mul_ps(_mm256_loadu_ps(acc + d + 8 * c), correction);
    for (std::size_t t = 0; t < n; ++t) {
      const __m256 w = _mm256_set1_ps(p[t]);
      for (int c = 0; c < C; ++c)
        a[c] = _mm256_fmadd_ps(w, _mm256_loadu_ps(row[t] + d + 8 * c), a[c]);
    }
    for (int c = 0; c < C; ++c)
      _mm256_storeu_ps(acc + d + 8 * c, a[c]);
  }

  // A query's values: acc = acc·correction + Σ_{t < n} p[t]·row[t].
  AEG_AVX2_TARGET static void accumulate(float* acc, float correction, const float* p,
                                         const float* const* row, std::size_t n, std::size_t hd) {
    const __m256 c = _mm256_set1_ps(correction);
    std::size_t d = 0;
    for (; d + 64 <= hd; d += 64)
      gather<8>(acc, c, p, row, n, d);
    for (; d < hd; d += 8) // head dims that are not multiples of 64
      gather<1>(acc, c, p, row, n, d);
  }
};

// The same steps 16 lanes wide (head sizes that are multiples of 16): a block's 16 scores fill
// one register, so a query's scores take one reduction and its softmax step one exponential.
struct avx512 {
  // T's rows of a block as floats, 16 values an instruction.
  template <class T>
  AEG_AVX512_TARGET static void load(block_rows<T>& rows, const std::byte* first,
                                     std::size_t token_bytes, std::size_t hd, std::size_t n) {
    for (std::size_t t = 0; t < n; ++t) {
      const std::byte* src = first + t * token_bytes;
      if constexpr (std::is_same_v<T, float>) {
        rows.row[t] = reinterpret_cast<const float*>(src);
      } else {
        float* dst = rows.buffer + t * hd;
        const auto* h = reinterpret_cast<const std::uint16_t*>(src);
        for (std::size_t d = 0; d < hd; d += 16)
          _mm512_store_ps(dst + d, _mm512_cvtph_ps(_mm256_loadu_si256(
                                       reinterpret_cast<const __m256i*>(h + d))));
        rows.row[t] = dst;
      }
    }
  }

  AEG_AVX512_TARGET static void score(const float* q, std::size_t hd, float scale,
                                      std::size_t valid, const float* const* krow, float* s) {
    __m512 a[block_tokens];
    for (auto& x : a)
      x = _mm512_setzero_ps();
    for (std::size_t d = 0; d < hd; d += 16) {
      const __m512 qd = _mm512_loadu_ps(q + d);
      for (std::size_t t = 0; t < block_tokens; ++t)
        a[t] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(krow[t] + d), a[t]);
    }
    const auto seen = static_cast<__mmask16>((1u << valid) - 1);
    _mm512_storeu_ps(s, _mm512_mask_blend_ps(seen, _mm512_set1_ps(-INFINITY),
                                             _mm512_mul_ps(hsum16x16(a), _mm512_set1_ps(scale))));
  }

  AEG_AVX512_TARGET static float softmax(float* s, float& max, float& sum) {
    const __m512 x = _mm512_loadu_ps(s);
    const float new_max = std::max(max, _mm512_reduce_max_ps(x));
    // e^0 is exactly 1: a maximum that stays needs no exponential.
    const float correction =
        new_max == max ? 1.0f : _mm512_cvtss_f32(exp16(_mm512_set1_ps(max - new_max)));
    const __m512 p = exp16(_mm512_sub_ps(x, _mm512_set1_ps(new_max)));
    _mm512_storeu_ps(s, p);
    sum = sum * correction + _mm512_reduce_add_ps(p);
    max = new_max;
    return correction;
  }

  template <int C>
  AEG_AVX512_TARGET static void gather(float* acc, __m512 correction, const float* p,
                                       const float* const* row, std::size_t n, std::size_t d) {
    __m512 a[C];
    for (int c = 0; c < C; ++c)
      a[c] = _mm512_mul_ps(_mm512_loadu_ps(acc + d + 16 * c), correction);
    for (std::size_t t = 0; t < n; ++t) {
      const __m512 w = _mm512_set1_ps(p[t]);
      for (int c = 0; c < C; ++c)
        a[c] = _mm512_fmadd_ps(w, _mm512_loadu_ps(row[t] + d + 16 * c), a[c]);
    }
    for (int c = 0; c < C; ++c)
      _mm512_storeu_ps(acc + d + 16 * c, a[c]);
  }

  AEG_AVX512_TARGET static void accumulate(float* acc, float correction, const float* p,
                                           const float* const* row, std::size_t n, std::size_t hd) {
    const __m512 c = _mm512_set1_ps(correction);
    std::size_t d = 0;
    for (; d + 64 <= hd; d += 64)
      gather<4>(acc, c, p, row, n, d);
    for (; d < hd; d += 16)
      gather<1>(acc, c, p, row, n, d);
  }
};

} // namespace aeg::kernels::cpu::attention_steps

#endif
