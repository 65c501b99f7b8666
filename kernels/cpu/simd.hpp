#pragma once

// AVX2 helpers shared by the CPU ops; each function carries its own target attribute, so that
// this header compiles into files built for baseline x86-64 and the caller checks uses_avx2().

#if defined(__x86_64__)
#include <cmath>
#include <immintrin.h>

namespace aeg::kernels::cpu {

#define AEG_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

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

} // namespace aeg::kernels::cpu

#endif
