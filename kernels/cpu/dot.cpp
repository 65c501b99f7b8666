#include "kernels/cpu/dot.hpp"

#include "kernels/half.hpp"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace aeg::kernels::cpu {

namespace {

// The integer sums are exact, so the vectorized and portable versions differ only in the order
// of float additions across blocks.

float dot_q8_0_ref(const block_q8_0* w, const block_q8a* x, std::size_t nb) {
  float sum = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    int acc = 0;
    for (int j = 0; j < 32; ++j)
      acc += w[i].qs[j] * x[i].qs[j];
    sum += half_to_float(w[i].d) * x[i].d * static_cast<float>(acc);
  }
  return sum;
}

float dot_q4_0_ref(const block_q4_0* w, const block_q8a* x, std::size_t nb) {
  float sum = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    int acc = 0;
    for (int j = 0; j < 16; ++j) {
      acc += ((w[i].qs[j] & 0xF) - 8) * x[i].qs[j];
      acc += ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + 16];
    }
    sum += half_to_float(w[i].d) * x[i].d * static_cast<float>(acc);
  }
  return sum;
}

float dot_q4_1_ref(const block_q4_1* w, const block_q8a* x, std::size_t nb) {
  float sum = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    int acc = 0;
    for (int j = 0; j < 16; ++j) {
      acc += (w[i].qs[j] & 0xF) * x[i].qs[j];
      acc += (w[i].qs[j] >> 4) * x[i].qs[j + 16];
    }
    sum +=
        half_to_float(w[i].d) * x[i].d * static_cast<float>(acc) + half_to_float(w[i].m) * x[i].s;
  }
  return sum;
}

float dot_q5_1_ref(const block_q5_1* w, const block_q8a* x, std::size_t nb) {
  float sum = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    std::uint32_t h;
    std::memcpy(&h, w[i].qh, sizeof h);
    int acc = 0;
    for (int j = 0; j < 16; ++j) {
      acc += ((w[i].qs[j] & 0xF) | (((h >> j) & 1) << 4)) * x[i].qs[j];
      acc += ((w[i].qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4)) * x[i].qs[j + 16];
    }
    sum +=
        half_to_float(w[i].d) * x[i].d * static_cast<float>(acc) + half_to_float(w[i].m) * x[i].s;
  }
  return sum;
}

float dot_f32_ref(const float* w, const float* x, std::size_t n) {
  float sum = 0;
  for (std::size_t i = 0; i < n; ++i)
    sum += w[i] * x[i];
  return sum;
}

float dot_f16_ref(const std::uint16_t* w, const float* x, std::size_t n) {
  float sum = 0;
  for (std::size_t i = 0; i < n; ++i)
    sum += half_to_float(w[i]) * x[i];
  return sum;
}

#if defined(__x86_64__)

#define AEG_AVX2 __attribute__((target("avx2,fma,f16c")))

AEG_AVX2 inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// 32 unsigned nibbles of a Q4 block: low nibbles are elements 0..15, high nibbles 16..31.
AEG_AVX2 inline __m256i unpack_nibbles(const std::uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i lo = _mm_and_si128(packed, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F));
  return _mm256_set_m128i(hi, lo);
}

// Sum over 32 lanes of u8 * s8, as 8 int32 lanes converted to float.
AEG_AVX2 inline __m256 dot_u8_s8(__m256i u, __m256i s) {
  const __m256i prod16 = _mm256_maddubs_epi16(u, s);
  const __m256i prod32 = _mm256_madd_epi16(prod16, _mm256_set1_epi16(1));
  return _mm256_cvtepi32_ps(prod32);
}

// Signed times signed: move the sign of `a` onto `b` so that maddubs sees |a| unsigned.
AEG_AVX2 inline __m256 dot_s8_s8(__m256i a, __m256i b) {
  return dot_u8_s8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

AEG_AVX2 float dot_q8_0_avx2(const block_q8_0* w, const block_q8a* x, std::size_t nb) {
  __m256 acc = _mm256_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs));
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
    const __m256 scale = _mm256_set1_ps(_cvtsh_ss(w[i].d) * x[i].d);
    acc = _mm256_fmadd_ps(scale, dot_s8_s8(wq, xq), acc);
  }
  return hsum(acc);
}

AEG_AVX2 float dot_q4_0_avx2(const block_q4_0* w, const block_q8a* x, std::size_t nb) {
  __m256 acc = _mm256_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const __m256i wq = _mm256_sub_epi8(unpack_nibbles(w[i].qs), _mm256_set1_epi8(8));
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
    const __m256 scale = _mm256_set1_ps(_cvtsh_ss(w[i].d) * x[i].d);
    acc = _mm256_fmadd_ps(scale, dot_s8_s8(wq, xq), acc);
  }
  return hsum(acc);
}

AEG_AVX2 float dot_q4_1_avx2(const block_q4_1* w, const block_q8a* x, std::size_t nb) {
  __m256 acc = _mm256_setzero_ps();
  float offsets = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    const __m256i wq = unpack_nibbles(w[i].qs);
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
    const __m256 scale = _mm256_set1_ps(_cvtsh_ss(w[i].d) * x[i].d);
    acc = _mm256_fmadd_ps(scale, dot_u8_s8(wq, xq), acc);
    offsets += _cvtsh_ss(w[i].m) * x[i].s;
  }
  return hsum(acc) + offsets;
}

// Byte j of the result is 0x10 where bit j of `h` is set: Q5_1's fifth bits, placed to be ORed
// onto unpack_nibbles' values.
AEG_AVX2 inline __m256i fifth_bits(std::uint32_t h) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(h)),
      _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                          _mm256_set1_epi8(0x10));
}

AEG_AVX2 float dot_q5_1_avx2(const block_q5_1* w, const block_q8a* x, std::size_t nb) {
  __m256 acc = _mm256_setzero_ps();
  float offsets = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    std::uint32_t h;
    std::memcpy(&h, w[i].qh, sizeof h);
    const __m256i wq = _mm256_or_si256(unpack_nibbles(w[i].qs), fifth_bits(h));
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
    const __m256 scale = _mm256_set1_ps(_cvtsh_ss(w[i].d) * x[i].d);
    acc = _mm256_fmadd_ps(scale, dot_u8_s8(wq, xq), acc);
    offsets += _cvtsh_ss(w[i].m) * x[i].s;
  }
  return hsum(acc) + offsets;
}

AEG_AVX2 float dot_f32_avx2(const float* w, const float* x, std::size_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
  }
  float sum = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i)
    sum += w[i] * x[i];
  return sum;
}

AEG_AVX2 float dot_f16_avx2(const std::uint16_t* w, const float* x, std::size_t n) {
  __m256 acc = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 wf = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    acc = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + i), acc);
  }
  float sum = hsum(acc);
  for (; i < n; ++i)
    sum += half_to_float(w[i]) * x[i];
  return sum;
}

bool detect_avx2() noexcept {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

#else

bool detect_avx2() noexcept {
  return false;
}

#endif

const bool have_avx2 = detect_avx2();

} // namespace

bool uses_avx2() noexcept {
  return have_avx2;
}

bool takes_quantized_activations(dtype t) noexcept {
  return t == dtype::q8_0 || t == dtype::q4_0 || t == dtype::q4_1 || t == dtype::q5_1;
}

bool computes_in(dtype t) noexcept {
  return t == dtype::f32 || t == dtype::f16 || takes_quantized_activations(t) || is_interleaved(t);
}

float dot_reference(dtype t, const void* w, const block_q8a* xq, const float* xf,
                    std::size_t n) noexcept {
  switch (t) {
  case dtype::q8_0:
    return dot_q8_0_ref(static_cast<const block_q8_0*>(w), xq, n / 32);
  case dtype::q4_0:
    return dot_q4_0_ref(static_cast<const block_q4_0*>(w), xq, n / 32);
  case dtype::q4_1:
    return dot_q4_1_ref(static_cast<const block_q4_1*>(w), xq, n / 32);
  case dtype::q5_1:
    return dot_q5_1_ref(static_cast<const block_q5_1*>(w), xq, n / 32);
  case dtype::f32:
    return dot_f32_ref(static_cast<const float*>(w), xf, n);
  case dtype::f16:
    return dot_f16_ref(static_cast<const std::uint16_t*>(w), xf, n);
  default:
    return 0; // callers convert other types at load (computes_in)
  }
}

float dot(dtype t, const void* w, const block_q8a* xq, const float* xf, std::size_t n) noexcept {
#if defined(__x86_64__)
  if (have_avx2) {
    switch (t) {
    case dtype::q8_0:
      return dot_q8_0_avx2(static_cast<const block_q8_0*>(w), xq, n / 32);
    case dtype::q4_0:
      return dot_q4_0_avx2(static_cast<const block_q4_0*>(w), xq, n / 32);
    case dtype::q4_1:
      return dot_q4_1_avx2(static_cast<const block_q4_1*>(w), xq, n / 32);
    case dtype::q5_1:
      return dot_q5_1_avx2(static_cast<const block_q5_1*>(w), xq, n / 32);
    case dtype::f32:
      return dot_f32_avx2(static_cast<const float*>(w), xf, n);
    case dtype::f16:
      return dot_f16_avx2(static_cast<const std::uint16_t*>(w), xf, n);
    default:
      break;
    }
  }
#endif
  return dot_reference(t, w, xq, xf, n);
}

} // namespace aeg::kernels::cpu
