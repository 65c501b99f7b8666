#include "kernels/cpu/matmul.hpp"

#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace aeg::kernels::cpu {

namespace {

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

AEG_AVX2 inline __m256i unpack_nibbles(const std::uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i lo = _mm_and_si128(packed, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F));
  return _mm256_set_m128i(hi, lo);
}

AEG_AVX2 inline __m256 dot_u8_s8(__m256i u, __m256i s) {
  const __m256i prod16 = _mm256_maddubs_epi16(u, s);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(prod16, _mm256_set1_epi16(1)));
}

// How each weight type enters the integer product with 8-bit activations. `load` gives the 32
// quantized weights of a block; `dot` multiplies them with 32 activations; Q4_1 adds an offset.
struct q4_1_policy {
  using block = block_q4_1;
  static constexpr bool has_offset = true;
  AEG_AVX2 static __m256i load(const block& b) { return unpack_nibbles(b.qs); }
  AEG_AVX2 static __m256 dot(__m256i w, __m256i x) { return dot_u8_s8(w, x); }
  AEG_AVX2 static float offset(const block& b) { return _cvtsh_ss(b.m); }
};

struct q4_0_policy {
  using block = block_q4_0;
  static constexpr bool has_offset = false;
  // Stored as nibbles - 8: multiply |w| by x with w's sign moved onto x.
  AEG_AVX2 static __m256i load(const block& b) {
    return _mm256_sub_epi8(unpack_nibbles(b.qs), _mm256_set1_epi8(8));
  }
  AEG_AVX2 static __m256 dot(__m256i w, __m256i x) {
    return dot_u8_s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  }
  AEG_AVX2 static float offset(const block&) { return 0; }
};

struct q8_0_policy {
  using block = block_q8_0;
  static constexpr bool has_offset = false;
  AEG_AVX2 static __m256i load(const block& b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
  }
  AEG_AVX2 static __m256 dot(__m256i w, __m256i x) { return q4_0_policy::dot(w, x); }
  AEG_AVX2 static float offset(const block&) { return 0; }
};

// y[r][j] for W weight rows starting at j and R activation rows starting at r. Every (j, r)
// accumulator sees the same operations in the same order whatever W and R are, so a row's result
// does not depend on the tile it was computed in (batch invariance).
template <class P, int W, int R>
AEG_AVX2 void tile(const std::byte* wbase, std::size_t wstride, std::size_t j, const block_q8a* x,
                   std::size_t r, std::size_t nb, float* y, std::size_t y_stride) {
  using block = typename P::block;
  const block* w[W];
  for (int i = 0; i < W; ++i)
    w[i] = reinterpret_cast<const block*>(wbase + (j + i) * wstride);
  const block_q8a* xr[R];
  for (int k = 0; k < R; ++k)
    xr[k] = x + (r + k) * nb;
  __m256 acc[W][R];
  float off[W][R];
  for (int i = 0; i < W; ++i)
    for (int k = 0; k < R; ++k) {
      acc[i][k] = _mm256_setzero_ps();
      off[i][k] = 0;
    }
  for (std::size_t b = 0; b < nb; ++b) {
    __m256i wq[W];
    float dw[W], mw[W];
    for (int i = 0; i < W; ++i) {
      wq[i] = P::load(w[i][b]);
      dw[i] = _cvtsh_ss(w[i][b].d);
      if constexpr (P::has_offset)
        mw[i] = P::offset(w[i][b]);
    }
    for (int k = 0; k < R; ++k) {
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr[k][b].qs));
      const float dx = xr[k][b].d;
      for (int i = 0; i < W; ++i) {
        acc[i][k] = _mm256_fmadd_ps(_mm256_set1_ps(dw[i] * dx), P::dot(wq[i], xq), acc[i][k]);
        if constexpr (P::has_offset)
          off[i][k] = __builtin_fmaf(mw[i], xr[k][b].s, off[i][k]);
      }
    }
  }
  for (int i = 0; i < W; ++i)
    for (int k = 0; k < R; ++k)
      y[(r + k) * y_stride + j + i] = hsum(acc[i][k]) + off[i][k];
}

// Weight rows [j0, j1) against every activation row. Tiles of 4 weight rows by one activation
// row keep every accumulator in a register (AVX2 has 16); 2 by 4 reuse each unpacked weight
// block four times when there are several rows (prefill, large batches).
template <class P>
AEG_AVX2 void rows_avx2(const matrix& w, const block_q8a* x, std::size_t rows, float* y,
                        std::size_t j0, std::size_t j1) {
  const auto* base = static_cast<const std::byte*>(w.data);
  const std::size_t stride = w.row_bytes(), nb = w.cols / 32;
  std::size_t j = j0;
  if (rows >= 4) {
    for (; j + 2 <= j1; j += 2) {
      std::size_t r = 0;
      for (; r + 4 <= rows; r += 4)
        tile<P, 2, 4>(base, stride, j, x, r, nb, y, w.rows);
      for (; r < rows; ++r)
        tile<P, 2, 1>(base, stride, j, x, r, nb, y, w.rows);
    }
  } else {
    for (; j + 4 <= j1; j += 4)
      for (std::size_t r = 0; r < rows; ++r)
        tile<P, 4, 1>(base, stride, j, x, r, nb, y, w.rows);
  }
  for (; j < j1; ++j)
    for (std::size_t r = 0; r < rows; ++r)
      tile<P, 1, 1>(base, stride, j, x, r, nb, y, w.rows);
}

// Interleaved kernels (Q4_1x8, Q8_0x8): one pass over a group of 8 weight rows yields the 8 outputs
// of an activation row as the 8 lanes of one vector, so no horizontal sum per output and one
// broadcast of the activation scale per block serve all 8 rows. Each lane sees
// acc = fma(dot, d_w·d_x, acc) (then acc = fma(m_w, s_x, acc) for Q4_1) block after block in
// both the vector and the portable version, so they agree bit for bit, whatever the batch.

// Rows [8g, 8g+8) against every activation row; `acc` holds 8 floats per activation row.
AEG_AVX2 void group_q4_1x8_avx2(const block_q4_1x8* w, const block_q8a* x, std::size_t rows,
                                std::size_t nb, float* acc) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  for (std::size_t r = 0; r < rows; ++r)
    _mm256_storeu_ps(acc + 8 * r, _mm256_setzero_ps());
  for (std::size_t b = 0; b < nb; ++b) {
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].d)));
    const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].m)));
    __m256i lo[4], hi[4]; // register p: rows p (low half) and p+4 (high half)
    for (int p = 0; p < 4; ++p) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs[2 * p]));
      lo[p] = _mm256_and_si256(v, low);
      hi[p] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    }
    for (std::size_t r = 0; r < rows; ++r) {
      const block_q8a& xb = x[r * nb + b];
      const __m256i xlo =
          _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xb.qs)));
      const __m256i xhi = _mm256_broadcastsi128_si256(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb.qs + 16)));
      __m256i s[4];
      for (int p = 0; p < 4; ++p) {
        const __m256i prod =
            _mm256_add_epi16(_mm256_maddubs_epi16(lo[p], xlo), _mm256_maddubs_epi16(hi[p], xhi));
        s[p] = _mm256_madd_epi16(prod, ones);
      }
      const __m256i sum =
          _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
      __m256 a = _mm256_loadu_ps(acc + 8 * r);
      a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(d, _mm256_set1_ps(xb.d)), a);
      a = _mm256_fmadd_ps(m, _mm256_set1_ps(xb.s), a);
      _mm256_storeu_ps(acc + 8 * r, a);
    }
  }
}

AEG_AVX2 void group_q8_0x8_avx2(const block_q8_0x8* w, const block_q8a* x, std::size_t rows,
                                std::size_t nb, float* acc) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (std::size_t r = 0; r < rows; ++r)
    _mm256_storeu_ps(acc + 8 * r, _mm256_setzero_ps());
  for (std::size_t b = 0; b < nb; ++b) {
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].d)));
    __m256i q[8], aq[8];
    for (int i = 0; i < 8; ++i) {
      q[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs[i]));
      aq[i] = _mm256_sign_epi8(q[i], q[i]);
    }
    for (std::size_t r = 0; r < rows; ++r) {
      const block_q8a& xb = x[r * nb + b];
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
      __m256i s[8];
      for (int i = 0; i < 8; ++i) // |w| times x with w's sign: maddubs wants one side unsigned
        s[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(aq[i], _mm256_sign_epi8(xq, q[i])), ones);
      // 8 vectors of 8 partial sums -> one vector of 8 row sums, in row order.
      const __m256i h0 =
          _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
      const __m256i h1 =
          _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
      const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20),
                                           _mm256_permute2x128_si256(h0, h1, 0x31));
      __m256 a = _mm256_loadu_ps(acc + 8 * r);
      a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(d, _mm256_set1_ps(xb.d)), a);
      _mm256_storeu_ps(acc + 8 * r, a);
    }
  }
}

#endif

// The portable twins of the interleaved kernels: the same arithmetic per lane.
void group_q4_1x8_portable(const block_q4_1x8* w, const block_q8a* x, std::size_t rows,
                           std::size_t nb, float* acc) {
  std::fill(acc, acc + 8 * rows, 0.0f);
  for (std::size_t b = 0; b < nb; ++b)
    for (std::size_t r = 0; r < rows; ++r) {
      const block_q8a& xb = x[r * nb + b];
      for (std::size_t i = 0; i < 8; ++i) {
        const std::uint8_t* q = w[b].qs[q4_1x8_slot(i)];
        int dot = 0;
        for (int j = 0; j < 16; ++j)
          dot += (q[j] & 0xF) * xb.qs[j] + (q[j] >> 4) * xb.qs[j + 16];
        const float d = half_to_float(w[b].d[i]) * xb.d;
        float a = std::fma(static_cast<float>(dot), d, acc[8 * r + i]);
        acc[8 * r + i] = std::fma(half_to_float(w[b].m[i]), xb.s, a);
      }
    }
}

void group_q8_0x8_portable(const block_q8_0x8* w, const block_q8a* x, std::size_t rows,
                           std::size_t nb, float* acc) {
  std::fill(acc, acc + 8 * rows, 0.0f);
  for (std::size_t b = 0; b < nb; ++b)
    for (std::size_t r = 0; r < rows; ++r) {
      const block_q8a& xb = x[r * nb + b];
      for (std::size_t i = 0; i < 8; ++i) {
        int dot = 0;
        for (int j = 0; j < 32; ++j)
          dot += w[b].qs[i][j] * xb.qs[j];
        acc[8 * r + i] =
            std::fma(static_cast<float>(dot), half_to_float(w[b].d[i]) * xb.d, acc[8 * r + i]);
      }
    }
}

// y = x · wᵀ for an interleaved w, over groups of 8 rows split between the compute threads.
void matmul_interleaved(const matrix& w, const block_q8a* xq, std::size_t rows, float* y,
                        bool vectorized) {
  const std::size_t nb = w.cols / 32, groups = w.rows / 8;
  parallel_for(groups, 4, [&](std::size_t begin, std::size_t end) {
    std::vector<float> acc(8 * rows);
    for (std::size_t g = begin; g < end; ++g) {
      if (w.type == dtype::q4_1x8) {
        const auto* wg = static_cast<const block_q4_1x8*>(w.data) + g * nb;
#if defined(__x86_64__)
        if (vectorized)
          group_q4_1x8_avx2(wg, xq, rows, nb, acc.data());
        else
#endif
          group_q4_1x8_portable(wg, xq, rows, nb, acc.data());
      } else {
        const auto* wg = static_cast<const block_q8_0x8*>(w.data) + g * nb;
#if defined(__x86_64__)
        if (vectorized)
          group_q8_0x8_avx2(wg, xq, rows, nb, acc.data());
        else
#endif
          group_q8_0x8_portable(wg, xq, rows, nb, acc.data());
      }
      for (std::size_t r = 0; r < rows; ++r)
        std::copy(acc.begin() + 8 * r, acc.begin() + 8 * r + 8, y + r * w.rows + 8 * g);
    }
  });
}

} // namespace

std::size_t matmul_scratch_bytes(const matrix& w, std::size_t rows) noexcept {
  if (!takes_quantized_activations(w.type) && !is_interleaved(w.type))
    return 0;
  return rows * (w.cols / 32) * sizeof(block_q8a);
}

void matmul(const matrix& w, const float* x, std::size_t rows, float* y, void* scratch) {
  matmul(w, x, rows, y, scratch, uses_avx2());
}

void matmul(const matrix& w, const float* x, std::size_t rows, float* y, void* scratch,
            bool vectorized) {
  const bool interleaved = is_interleaved(w.type);
  const bool quantized = interleaved || takes_quantized_activations(w.type);
  auto* xq = static_cast<block_q8a*>(scratch);
  const std::size_t blocks_per_row = w.cols / 32;
  if (quantized)
    parallel_for(rows, 16, [&](std::size_t begin, std::size_t end) {
      for (std::size_t r = begin; r < end; ++r)
        quantize_activations(x + r * w.cols, xq + r * blocks_per_row, w.cols);
    });
  if (interleaved)
    return matmul_interleaved(w, xq, rows, y, vectorized);
#if defined(__x86_64__)
  if (quantized && vectorized) {
    auto run = [&](std::size_t j0, std::size_t j1) {
      switch (w.type) {
      case dtype::q4_1:
        return rows_avx2<q4_1_policy>(w, xq, rows, y, j0, j1);
      case dtype::q4_0:
        return rows_avx2<q4_0_policy>(w, xq, rows, y, j0, j1);
      default:
        return rows_avx2<q8_0_policy>(w, xq, rows, y, j0, j1);
      }
    };
    // Chunks of whole 4-row tiles, so that the split never changes a row's tile shape.
    const std::size_t tiles = w.rows / 4;
    if (tiles == 0)
      return run(0, w.rows);
    parallel_for(tiles, 8, [&](std::size_t begin, std::size_t end) {
      run(begin * 4, end == tiles ? w.rows : end * 4);
    });
    return;
  }
#endif
  const auto* base = static_cast<const std::byte*>(w.data);
  const std::size_t stride = w.row_bytes();
  // Weight rows in the outer loop: each row is read from memory once per call and stays in
  // cache while every activation row uses it.
  parallel_for(w.rows, 16, [&](std::size_t begin, std::size_t end) {
    for (std::size_t j = begin; j < end; ++j) {
      const void* wr = base + j * stride;
      for (std::size_t r = 0; r < rows; ++r)
        y[r * w.rows + j] =
            dot(w.type, wr, quantized ? xq + r * blocks_per_row : nullptr, x + r * w.cols, w.cols);
    }
  });
}

} // namespace aeg::kernels::cpu
