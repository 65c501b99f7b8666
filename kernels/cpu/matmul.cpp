#include "kernels/cpu/matmul.hpp"

#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/matmul_k16.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace aeg::kernels::cpu {

namespace {

#if defined(__x86_64__)

#define AEG_AVX2 __attribute__((target("avx2,fma,f16c")))

// Interleaved kernels (Q4_1x8, Q5_1x8, Q8_0x8 here; Q6_Kx8, Q3_Kx8 and Q2_Kx8 in matmul_k16.cpp):
// one pass over a group of 8 weight rows yields the 8 outputs of an activation row as the 8 lanes
// of one vector, so no horizontal sum per output and one broadcast of the activation scale per
// block serve all 8 rows. Each lane sees acc = fma(dot, d_w·d_x, acc) (then acc = fma(m_w, s_x,
// acc) for Q4_1 and Q5_1) block after block in both the vector and the portable version, so they
// agree bit for bit, whatever the batch.

// The kernels are written once (interleaved.inc) and compiled for AVX2 and for AVX-512 VNNI,
// which sums 4 byte products into 32-bit lanes in one instruction. The integer sums are the same
// either way, so both give identical results.
// One Q4_1x8 block against one activation block: lane r gets row r's integer dot product.
// `lo[p]`/`hi[p]`: the rows' columns 4p..4p+3 / 16+4p..16+4p+3, unsigned; `xq`: the activations.
// AVX2: the 8 byte-pair sums per lane fit int16 (|w·x| ≤ 15·128 each, 16 pairs ≤ 30720).
AEG_AVX2 inline __m256i block_dot_avx2(const __m256i* lo, const __m256i* hi,
                                       const std::int8_t* xq) {
  __m256i s = _mm256_setzero_si256();
  for (int p = 0; p < 4; ++p) {
    std::int32_t xl, xh;
    std::memcpy(&xl, xq + 4 * p, 4);
    std::memcpy(&xh, xq + 16 + 4 * p, 4);
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(lo[p], _mm256_set1_epi32(xl)));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[p], _mm256_set1_epi32(xh)));
  }
  return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
}

// block_dot_avx2 for Q5_1x8's values 0..31: a byte-pair sum reaches 2·31·127 = 7874 (activations
// stay within ±127), so four fit int16 but eight do not; the low and high halves widen apart.
AEG_AVX2 inline __m256i block_dot5_avx2(const __m256i* lo, const __m256i* hi,
                                        const std::int8_t* xq) {
  __m256i sl = _mm256_setzero_si256(), sh = _mm256_setzero_si256();
  for (int p = 0; p < 4; ++p) {
    std::int32_t xl, xh;
    std::memcpy(&xl, xq + 4 * p, 4);
    std::memcpy(&xh, xq + 16 + 4 * p, 4);
    sl = _mm256_add_epi16(sl, _mm256_maddubs_epi16(lo[p], _mm256_set1_epi32(xl)));
    sh = _mm256_add_epi16(sh, _mm256_maddubs_epi16(hi[p], _mm256_set1_epi32(xh)));
  }
  const __m256i ones = _mm256_set1_epi16(1);
  return _mm256_add_epi32(_mm256_madd_epi16(sl, ones), _mm256_madd_epi16(sh, ones));
}

// One Q8_0x8 block against one activation block, lane r getting row r's dot product. The
// weights are signed, as the activations are, and the byte products take one unsigned side:
// AVX2 multiplies |w| by x with w's sign (each pair sum fits int16, so it widens per group).
struct q8_prepared_avx2 {
  __m256i abs[8];
};
AEG_AVX2 inline q8_prepared_avx2 q8_prepare_avx2(const __m256i* q) {
  q8_prepared_avx2 p;
  for (int t = 0; t < 8; ++t)
    p.abs[t] = _mm256_sign_epi8(q[t], q[t]);
  return p;
}
AEG_AVX2 inline __m256i q8_dot_avx2(const __m256i* q, const q8_prepared_avx2& p,
                                    const std::int8_t* xq) {
  __m256i s = _mm256_setzero_si256();
  for (int t = 0; t < 8; ++t) {
    std::int32_t x4;
    std::memcpy(&x4, xq + 4 * t, 4);
    const __m256i xs = _mm256_sign_epi8(_mm256_set1_epi32(x4), q[t]);
    s = _mm256_add_epi32(
        s, _mm256_madd_epi16(_mm256_maddubs_epi16(p.abs[t], xs), _mm256_set1_epi16(1)));
  }
  return s;
}

#define AEG_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))
// VNNI takes the activations as unsigned, x + 128 (a flip of the top bit):
// Σ (x + 128)·w = Σ x·w + 128·Σ w, with Σ w per row from one dot with ones per block.
struct q8_prepared_vnni {
  __m256i sum128;
};
AEG_VNNI inline q8_prepared_vnni q8_prepare_vnni(const __m256i* q) {
  const __m256i ones = _mm256_set1_epi8(1);
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
  for (int t = 0; t < 8; t += 2) {
    s0 = _mm256_dpbusd_epi32(s0, ones, q[t]);
    s1 = _mm256_dpbusd_epi32(s1, ones, q[t + 1]);
  }
  return {_mm256_slli_epi32(_mm256_add_epi32(s0, s1), 7)};
}
AEG_VNNI inline __m256i q8_dot_vnni(const __m256i* q, const q8_prepared_vnni& p,
                                    const std::int8_t* xq) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
  for (int t = 0; t < 8; t += 2) {
    std::int32_t x0, x1;
    std::memcpy(&x0, xq + 4 * t, 4);
    std::memcpy(&x1, xq + 4 * t + 4, 4);
    s0 = _mm256_dpbusd_epi32(s0, _mm256_xor_si256(_mm256_set1_epi32(x0), flip), q[t]);
    s1 = _mm256_dpbusd_epi32(s1, _mm256_xor_si256(_mm256_set1_epi32(x1), flip), q[t + 1]);
  }
  return _mm256_sub_epi32(_mm256_add_epi32(s0, s1), p.sum128);
}

// block_dot_avx2 with VNNI: two independent chains of 4 dot-accumulates, to hide their latency.
AEG_VNNI inline __m256i block_dot_vnni(const __m256i* lo, const __m256i* hi,
                                       const std::int8_t* xq) {
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
  for (int p = 0; p < 4; ++p) {
    std::int32_t xl, xh;
    std::memcpy(&xl, xq + 4 * p, 4);
    std::memcpy(&xh, xq + 16 + 4 * p, 4);
    s0 = _mm256_dpbusd_epi32(s0, lo[p], _mm256_set1_epi32(xl));
    s1 = _mm256_dpbusd_epi32(s1, hi[p], _mm256_set1_epi32(xh));
  }
  return _mm256_add_epi32(s0, s1);
}

// VNNI's 32-bit sums hold 5-bit products as they do 4-bit ones.
AEG_VNNI inline __m256i block_dot5_vnni(const __m256i* lo, const __m256i* hi,
                                        const std::int8_t* xq) {
  return block_dot_vnni(lo, hi, xq);
}

#define AEG_ISA_TARGET AEG_AVX2
#define AEG_ISA_SUFFIX avx2
#define AEG_ISA_ROWS 2 // 16 vector registers
#include "kernels/cpu/interleaved.inc"
#undef AEG_ISA_TARGET
#undef AEG_ISA_SUFFIX
#undef AEG_ISA_ROWS

#define AEG_ISA_TARGET AEG_VNNI
#define AEG_ISA_SUFFIX vnni
#define AEG_ISA_ROWS 4 // 32 vector registers
#include "kernels/cpu/interleaved.inc"
#undef AEG_ISA_TARGET
#undef AEG_ISA_SUFFIX
#undef AEG_ISA_ROWS

// kernels::quantize_activations, 8 lanes at a time, with the same result: the same maximum, scale
// and round-to-nearest-even.
AEG_AVX2 void quantize_activations_avx2(const float* x, block_q8a* y, std::size_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (std::size_t i = 0; i < n / 32; ++i, x += 32) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float d = _mm_cvtss_f32(m) / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const __m256 scale = _mm256_set1_ps(id);
    __m256i q[4];
    __m256i sum = _mm256_setzero_si256();
    for (int k = 0; k < 4; ++k) {
      q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], scale),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      sum = _mm256_add_epi32(sum, q[k]);
    }
    // int32 -> int8; the packs leave groups of 4 in the order 0 2 4 6 | 1 3 5 7.
    const __m256i packed =
        _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    const __m256i p8 =
        _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), p8);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    y[i].d = d;
    y[i].s = d * static_cast<float>(_mm_cvtsi128_si32(s4));
  }
}

bool detect_vnni() noexcept {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw");
}
const bool have_vnni = detect_vnni();

#endif

// The portable twins of the interleaved kernels: the same arithmetic per lane.
template <class Block>
void group_affine_portable(const Block* w, const block_q8a* x, std::size_t rows, std::size_t nb,
                           float* acc) {
  std::fill(acc, acc + 8 * rows, 0.0f);
  for (std::size_t b = 0; b < nb; ++b)
    for (std::size_t r = 0; r < rows; ++r) {
      const block_q8a& xb = x[r * nb + b];
      for (std::size_t i = 0; i < 8; ++i) {
        std::uint32_t h = 0; // Q5_1x8's fifth bits; none in Q4_1x8
        if constexpr (std::is_same_v<Block, block_q5_1x8>)
          std::memcpy(&h, w[b].qh + 4 * i, sizeof h);
        int dot = 0;
        for (std::size_t j = 0; j < 16; ++j) {
          const std::uint8_t q = w[b].qs[q4_1x8_byte(i, j)];
          const auto h0 = static_cast<int>((h >> q5_1x8_high_bit(j)) & 1);
          const auto h1 = static_cast<int>((h >> q5_1x8_high_bit(j + 16)) & 1);
          dot += ((q & 0xF) | (h0 << 4)) * xb.qs[j] + ((q >> 4) | (h1 << 4)) * xb.qs[j + 16];
        }
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
        for (std::size_t j = 0; j < 32; ++j)
          dot += w[b].qs[q8_0x8_byte(i, j)] * xb.qs[j];
        acc[8 * r + i] =
            std::fma(static_cast<float>(dot), half_to_float(w[b].d[i]) * xb.d, acc[8 * r + i]);
      }
    }
}

// One group of 8 rows of Q4_1x8 or Q5_1x8 against every activation row.
template <class Block>
void run_affine(const Block* wg, const block_q8a* xq, std::size_t rows, std::size_t nb, float* acc,
                cpu_isa isa) {
#if defined(__x86_64__)
  if (isa == cpu_isa::avx512_vnni)
    return group_affine_vnni(wg, xq, rows, nb, acc);
  if (isa == cpu_isa::avx2)
    return group_affine_avx2(wg, xq, rows, nb, acc);
#endif
  group_affine_portable(wg, xq, rows, nb, acc);
}

// One group of 8 rows of an interleaved matrix against every activation row; `xsum` as
// half_sums writes it (the per-16-column types only).
void run_group(const matrix& w, std::size_t g, const block_q8a* xq, const std::int32_t* xsum,
               std::size_t rows, float* acc, cpu_isa isa) {
  const std::size_t nb = w.cols / 32;
  if (is_k16(w.type))
    return run_k16_group(w, g, xq, xsum, rows, acc, isa);
  if (w.type == dtype::q4_1x8)
    return run_affine(static_cast<const block_q4_1x8*>(w.data) + g * nb, xq, rows, nb, acc, isa);
  if (w.type == dtype::q5_1x8)
    return run_affine(static_cast<const block_q5_1x8*>(w.data) + g * nb, xq, rows, nb, acc, isa);
  const auto* wg = static_cast<const block_q8_0x8*>(w.data) + g * nb;
#if defined(__x86_64__)
  if (isa == cpu_isa::avx512_vnni)
    return group_q8_0x8_vnni(wg, xq, rows, nb, acc);
  if (isa == cpu_isa::avx2)
    return group_q8_0x8_avx2(wg, xq, rows, nb, acc);
#endif
  group_q8_0x8_portable(wg, xq, rows, nb, acc);
}

// Activation rows a group of 8 weight rows walks at a time: about 1 MiB of quantized blocks, which
// stay in cache while every group of a thread's job passes over them. Walking all rows at once
// streamed a long prompt's activations from memory once per group (an 8k-token prompt's down
// projection in Qwen2.5-7B has 192 MB of them); in chunks, only the weights are read again, once
// per chunk. A row's sums are the same whatever the chunk, so are its bits.
std::size_t rows_per_chunk(std::size_t cols) noexcept {
  constexpr std::size_t chunk_bytes = std::size_t{1} << 20;
  const std::size_t row_bytes = cols / 32 * sizeof(block_q8a);
  return std::max<std::size_t>(16, chunk_bytes / row_bytes / 16 * 16);
}

// y_i = x · w_iᵀ for interleaved matrices sharing one quantized input: one job over all their
// groups of 8 rows, so the threads finish together once rather than once per matrix.
void matmul_interleaved(std::span<const matrix> ws, std::span<float* const> ys, const block_q8a* xq,
                        std::size_t rows, cpu_isa isa) {
  const bool split =
      std::any_of(ws.begin(), ws.end(), [](const matrix& w) { return is_k16(w.type); });
  const std::size_t nb = ws[0].cols / 32;
  const auto xsum = split ? half_sums(xq, rows * nb) : std::vector<std::int32_t>{};
  std::vector<std::size_t> first(ws.size() + 1, 0); // first group of each matrix
  for (std::size_t i = 0; i < ws.size(); ++i)
    first[i + 1] = first[i] + ws[i].rows / 8;
  const std::size_t chunk = std::min(rows, rows_per_chunk(ws[0].cols));
  parallel_for(first.back(), 4, [&](std::size_t begin, std::size_t end) {
    std::vector<float> acc(8 * chunk);
    for (std::size_t r0 = 0; r0 < rows; r0 += chunk) {
      const std::size_t n = std::min(chunk, rows - r0);
      const std::int32_t* sums = split ? xsum.data() + 2 * r0 * nb : nullptr;
      std::size_t i = 0;
      for (std::size_t g = begin; g < end; ++g) {
        while (g >= first[i + 1])
          ++i;
        const std::size_t local = g - first[i];
        run_group(ws[i], local, xq + r0 * nb, sums, n, acc.data(), isa);
        for (std::size_t r = 0; r < n; ++r)
          std::copy(acc.begin() + 8 * r, acc.begin() + 8 * r + 8,
                    ys[i] + (r0 + r) * ws[i].rows + 8 * local);
      }
    }
  });
}

// Quantizes `rows` rows of `cols` activations into Q8 blocks.
void quantize_rows(const float* x, std::size_t rows, std::size_t cols, block_q8a* xq, cpu_isa isa) {
  const std::size_t nb = cols / 32;
  parallel_for(rows, 16, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) {
#if defined(__x86_64__)
      if (isa != cpu_isa::portable) {
        quantize_activations_avx2(x + r * cols, xq + r * nb, cols);
        continue;
      }
#endif
      quantize_activations(x + r * cols, xq + r * nb, cols);
    }
  });
}

} // namespace

std::size_t matmul_scratch_bytes(const matrix& w, std::size_t rows) noexcept {
  if (!takes_quantized_activations(w.type) && !is_interleaved(w.type))
    return 0;
  return rows * (w.cols / 32) * sizeof(block_q8a);
}

cpu_isa best_isa() noexcept {
#if defined(__x86_64__)
  if (have_vnni && uses_avx2())
    return cpu_isa::avx512_vnni;
#endif
  return uses_avx2() ? cpu_isa::avx2 : cpu_isa::portable;
}

void matmul(const matrix& w, const float* x, std::size_t rows, float* y, void* scratch) {
  matmul(w, x, rows, y, scratch, best_isa());
}

void matmul(const matrix& w, const float* x, std::size_t rows, float* y, void* scratch,
            cpu_isa isa) {
  matmul_many(std::span(&w, 1), x, rows, std::span(&y, 1), scratch, isa);
}

void matmul_many(std::span<const matrix> ws, const float* x, std::size_t rows,
                 std::span<float* const> ys, void* scratch) {
  matmul_many(ws, x, rows, ys, scratch, best_isa());
}

void matmul_many(std::span<const matrix> ws, const float* x, std::size_t rows,
                 std::span<float* const> ys, void* scratch, cpu_isa isa) {
  if (ws.empty())
    return;
  const std::size_t cols = ws[0].cols;
  const bool interleaved = std::all_of(ws.begin(), ws.end(), [&](const matrix& w) {
    return is_interleaved(w.type) && w.cols == cols;
  });
  if (interleaved) {
    auto* xq = static_cast<block_q8a*>(scratch);
    quantize_rows(x, rows, cols, xq, isa);
    return matmul_interleaved(ws, ys, xq, rows, isa);
  }
  // Row-major weights (matrices whose rows are not a multiple of 8, or float types): one dot
  // product per output, weight rows outermost so each is read once per call. An interleaved
  // matrix among them (a mixed layer) takes its own kernel.
  for (std::size_t i = 0; i < ws.size(); ++i) {
    const matrix& w = ws[i];
    float* y = ys[i];
    if (is_interleaved(w.type)) {
      matmul_many(ws.subspan(i, 1), x, rows, ys.subspan(i, 1), scratch, isa);
      continue;
    }
    const bool quantized = takes_quantized_activations(w.type);
    auto* xq = static_cast<block_q8a*>(scratch);
    if (quantized)
      quantize_rows(x, rows, w.cols, xq, isa);
    const auto* base = static_cast<const std::byte*>(w.data);
    const std::size_t stride = w.row_bytes(), nb = w.cols / 32;
    parallel_for(w.rows, 16, [&](std::size_t begin, std::size_t end) {
      for (std::size_t j = begin; j < end; ++j)
        for (std::size_t r = 0; r < rows; ++r) {
          const void* wr = base + j * stride;
          const block_q8a* xr = quantized ? xq + r * nb : nullptr;
          y[r * w.rows + j] = isa == cpu_isa::portable
                                  ? dot_reference(w.type, wr, xr, x + r * w.cols, w.cols)
                                  : dot(w.type, wr, xr, x + r * w.cols, w.cols);
        }
    });
  }
}

} // namespace aeg::kernels::cpu
