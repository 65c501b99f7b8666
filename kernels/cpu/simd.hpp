#pragma once

// AVX2 and AVX-512 helpers shared by the CPU ops; each function carries its own target attribute,
// so that this header compiles into files built for baseline x86-64 and the caller checks that
// the processor has them (uses_avx2(), best_attention_isa()).

#if defined(__x86_64__)
#include <cmath>
#include <immintrin.h>

namespace aeg::kernels::cpu {

#define AEG_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define AEG_AVX512_TARGET                                                                          \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq")))

// e^x, 8 at a time: x = n·ln2 + r with |r| ≤ ln2/2, e^r from Cephes' degree-6 polynomial for
// expf, 2^n built in the exponent bits; within a few ulp of std::exp. Beyond the range of
// normal results it gives what std::exp rounds to there, or nearly: 0 below -87.3 (-∞ included),
// ∞ above 88.7; e^0 is exactly 1.
AEG_AVX2_TARGET inline __m256 exp8(__m256 x_in) {
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

/// The sum of the 8 lanes.
AEG_AVX2_TARGET inline float hsum8(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  return _mm_cvtss_f32(_mm_add_ss(lo, _mm_movehdup_ps(lo)));
}

/// The largest of the 8 lanes.
AEG_AVX2_TARGET inline float hmax8(__m256 v) {
  __m128 lo = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
  return _mm_cvtss_f32(_mm_max_ss(lo, _mm_movehdup_ps(lo)));
}

/// Lane j of the result is the sum of the lanes of a[j]: eight horizontal sums at the cost of
/// about two.
AEG_AVX2_TARGET inline __m256 hsum8x8(const __m256 (&a)[8]) {
  const __m256 s01 = _mm256_hadd_ps(a[0], a[1]), s23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 s45 = _mm256_hadd_ps(a[4], a[5]), s67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
  // Lanes 0-3 of s0123 hold the low halves' sums of a[0..3], lanes 4-7 the high halves'.
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20),
                       _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

/// exp8's arithmetic, 16 at a time (lane for lane the same results).
AEG_AVX512_TARGET inline __m512 exp16(__m512 x_in) {
  const __m512 x =
      _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x_in));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i biased = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
  __m512 e = _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(biased, 23)));
  e = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x_in, _mm512_set1_ps(-87.33f), _CMP_LT_OQ), e,
                           _mm512_setzero_ps());
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x_in, _mm512_set1_ps(88.72f), _CMP_GT_OQ), e,
                              _mm512_set1_ps(INFINITY));
}

/// Lane j of the result is the sum of the lanes of a[j]: sixteen horizontal sums in 45
/// instructions.
AEG_AVX512_TARGET inline __m512 hsum16x16(const __m512 (&a)[16]) {
  // Pairs, then quads, interleaved within each 128-bit lane: lane group k of q[g] holds the sums
  // over group k of a[4g .. 4g + 3].
  __m512 pair[8], quad[4];
  for (int i = 0; i < 8; ++i)
    pair[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                            _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {
    const __m512d x = _mm512_castps_pd(pair[2 * i]), y = _mm512_castps_pd(pair[2 * i + 1]);
    quad[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                            _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  // Then across the four 128-bit lane groups.
  const __m512 q01 = _mm512_add_ps(_mm512_shuffle_f32x4(quad[0], quad[1], 0x88),
                                   _mm512_shuffle_f32x4(quad[0], quad[1], 0xDD));
  const __m512 q23 = _mm512_add_ps(_mm512_shuffle_f32x4(quad[2], quad[3], 0x88),
                                   _mm512_shuffle_f32x4(quad[2], quad[3], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(q01, q23, 0x88), _mm512_shuffle_f32x4(q01, q23, 0xDD));
}

} // namespace aeg::kernels::cpu

#endif
