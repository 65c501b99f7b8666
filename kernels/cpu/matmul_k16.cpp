#include "kernels/cpu/matmul_k16.hpp"

#include "kernels/half.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace aeg::kernels::cpu {

namespace {

#if defined(__x86_64__)

// Each lane sees acc = fma(dot, d_w·d_x, acc) sub-block after sub-block, with `dot` the two
// 16-column halves' sums times their scales in integers (then acc = fma(mins, −dmin·d_x, acc)
// for Q2_Kx8), in both the vector and the portable version, so they agree bit for bit. The
// kernels are written once (interleaved_k16.inc) for AVX2 and AVX-512 VNNI; the integer sums
// are the same either way.

#define AEG_AVX2 __attribute__((target("avx2,fma,f16c")))

// One Q6_Kx8, Q3_Kx8 or Q2_Kx8 sub-block against one activation block: lane r of `da` (`db`)
// gets row r's Σ q·x over columns 0..15 (16..31), values q in 0..63. A byte-pair sum reaches
// 2·63·127 = 16002, so two fit int16 and each pair of them widens.
AEG_AVX2 inline void split_dot_avx2(const __m256i* lo, const __m256i* hi, const std::int8_t* xq,
                                    __m256i& da, __m256i& db) {
  const __m256i ones = _mm256_set1_epi16(1);
  da = _mm256_setzero_si256();
  db = _mm256_setzero_si256();
  for (int p = 0; p < 4; p += 2) {
    std::int32_t x[4];
    std::memcpy(x, xq + 4 * p, 8);
    std::memcpy(x + 2, xq + 16 + 4 * p, 8);
    const __m256i sl = _mm256_add_epi16(_mm256_maddubs_epi16(lo[p], _mm256_set1_epi32(x[0])),
                                        _mm256_maddubs_epi16(lo[p + 1], _mm256_set1_epi32(x[1])));
    const __m256i sh = _mm256_add_epi16(_mm256_maddubs_epi16(hi[p], _mm256_set1_epi32(x[2])),
                                        _mm256_maddubs_epi16(hi[p + 1], _mm256_set1_epi32(x[3])));
    da = _mm256_add_epi32(da, _mm256_madd_epi16(sl, ones));
    db = _mm256_add_epi32(db, _mm256_madd_epi16(sh, ones));
  }
}

#define AEG_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))

AEG_VNNI inline void split_dot_vnni(const __m256i* lo, const __m256i* hi, const std::int8_t* xq,
                                    __m256i& da, __m256i& db) {
  da = _mm256_setzero_si256();
  db = _mm256_setzero_si256();
  for (int p = 0; p < 4; ++p) {
    std::int32_t xl, xh;
    std::memcpy(&xl, xq + 4 * p, 4);
    std::memcpy(&xh, xq + 16 + 4 * p, 4);
    da = _mm256_dpbusd_epi32(da, lo[p], _mm256_set1_epi32(xl));
    db = _mm256_dpbusd_epi32(db, hi[p], _mm256_set1_epi32(xh));
  }
}

#define AEG_ISA_TARGET AEG_AVX2
#define AEG_ISA_SUFFIX avx2
#define AEG_ISA_ROWS 2 // 16 vector registers
#include "kernels/cpu/interleaved_k16.inc"
#undef AEG_ISA_TARGET
#undef AEG_ISA_SUFFIX
#undef AEG_ISA_ROWS

#define AEG_ISA_TARGET AEG_VNNI
#define AEG_ISA_SUFFIX vnni
#define AEG_ISA_ROWS 4 // 32 vector registers
#include "kernels/cpu/interleaved_k16.inc"
#undef AEG_ISA_TARGET
#undef AEG_ISA_SUFFIX
#undef AEG_ISA_ROWS

#endif

// The portable twin of group_split: the same arithmetic per lane.
template <class Block>
void group_split_portable(const Block* w, const block_q8a* x, const std::int32_t* xsum,
                          std::size_t rows, std::size_t nsb, float* acc) {
  constexpr bool mins = std::is_same_v<Block, block_q2_kx8>;
  constexpr int offset = std::is_same_v<Block, block_q6_kx8> ? 32 : mins ? 0 : 4;
  std::fill(acc, acc + 8 * rows, 0.0f);
  const std::size_t nb = 8 * nsb;
  for (std::size_t s = 0; s < nsb; ++s)
    for (std::size_t j = 0; j < 8; ++j)
      for (std::size_t r = 0; r < rows; ++r) {
        const auto& sub = w[s].sub[j];
        const std::size_t at = r * nb + 8 * s + j;
        for (std::size_t i = 0; i < 8; ++i) {
          int half[2] = {-offset * xsum[2 * at], -offset * xsum[2 * at + 1]};
          for (std::size_t c = 0; c < 32; ++c)
            half[c / 16] += kx8_value(sub, i, c) * x[at].qs[c];
          int sa = sub.sc[i], sb = sub.sc[8 + i];
          if constexpr (mins) {
            sa &= 0xF;
            sb &= 0xF;
          }
          const int t = half[0] * sa + half[1] * sb;
          float a =
              std::fma(static_cast<float>(t), half_to_float(w[s].d[i]) * x[at].d, acc[8 * r + i]);
          if constexpr (mins) {
            const int m = (sub.sc[i] >> 4) * xsum[2 * at] + (sub.sc[8 + i] >> 4) * xsum[2 * at + 1];
            a = std::fma(static_cast<float>(m), -(half_to_float(w[s].dmin[i]) * x[at].d), a);
          }
          acc[8 * r + i] = a;
        }
      }
}

template <class Block>
void run_split(const Block* wg, const block_q8a* xq, const std::int32_t* xsum, std::size_t rows,
               std::size_t nsb, float* acc, cpu_isa isa) {
#if defined(__x86_64__)
  if (isa == cpu_isa::avx512_vnni)
    return group_split_vnni(wg, xq, xsum, rows, nsb, acc);
  if (isa == cpu_isa::avx2)
    return group_split_avx2(wg, xq, xsum, rows, nsb, acc);
#endif
  group_split_portable(wg, xq, xsum, rows, nsb, acc);
}

} // namespace

bool is_k16(dtype t) noexcept {
  return t == dtype::q6_kx8 || t == dtype::q3_kx8 || t == dtype::q2_kx8;
}

std::vector<std::int32_t> half_sums(const block_q8a* xq, std::size_t blocks) {
  std::vector<std::int32_t> out(2 * blocks);
  for (std::size_t b = 0; b < blocks; ++b)
    for (std::size_t c = 0; c < 32; ++c)
      out[2 * b + c / 16] += xq[b].qs[c];
  return out;
}

void run_k16_group(const matrix& w, std::size_t g, const block_q8a* xq, const std::int32_t* xsum,
                   std::size_t rows, float* acc, cpu_isa isa) {
  const std::size_t nsb = w.cols / 256;
  if (w.type == dtype::q6_kx8)
    return run_split(static_cast<const block_q6_kx8*>(w.data) + g * nsb, xq, xsum, rows, nsb, acc,
                     isa);
  if (w.type == dtype::q3_kx8)
    return run_split(static_cast<const block_q3_kx8*>(w.data) + g * nsb, xq, xsum, rows, nsb, acc,
                     isa);
  run_split(static_cast<const block_q2_kx8*>(w.data) + g * nsb, xq, xsum, rows, nsb, acc, isa);
}

} // namespace aeg::kernels::cpu
