// Rewrites K-quant rows as plain block types without going through floats (quant.hpp's
// transcode_row): the stored integers are kept and only the sub-block scales are rounded.

#include "coro/assert.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"

#include <cstring>

namespace aeg::kernels {

namespace {

// A sub-block's x = d·sc·q − dmin·m as Q4_1/Q5_1's x = d'·q + m'. d and dmin have 11
// significant bits, sc and m 6: both products are exact in float, so each is rounded once, to
// f16.
template <class Block>
void set_scales(Block& b, float d, float dmin, int sub, const std::uint8_t* scales) {
  std::uint8_t sc, m;
  scale_min_k4(sub, scales, sc, m);
  b.d = float_to_half(d * static_cast<float>(sc));
  b.m = float_to_half(-(dmin * static_cast<float>(m)));
}

void transcode_q4_k(const block_q4_k* in, block_q4_1* out, std::size_t nb) {
  for (std::size_t i = 0; i < nb; ++i) {
    const float d = half_to_float(in[i].d), dmin = half_to_float(in[i].dmin);
    for (int c = 0; c < 4; ++c) { // 64 values: sub-blocks 2c (low nibbles) and 2c + 1 (high)
      const std::uint8_t* q = in[i].qs + 32 * c;
      for (int half = 0; half < 2; ++half) {
        block_q4_1& b = *out++;
        set_scales(b, d, dmin, 2 * c + half, in[i].scales);
        const int shift = 4 * half;
        for (int j = 0; j < 16; ++j)
          b.qs[j] = static_cast<std::uint8_t>(((q[j] >> shift) & 0xF) |
                                              (((q[j + 16] >> shift) & 0xF) << 4));
      }
    }
  }
}

void transcode_q5_k(const block_q5_k* in, block_q5_1* out, std::size_t nb) {
  for (std::size_t i = 0; i < nb; ++i) {
    const float d = half_to_float(in[i].d), dmin = half_to_float(in[i].dmin);
    for (int c = 0; c < 4; ++c) {
      const std::uint8_t* q = in[i].qs + 32 * c;
      for (int half = 0; half < 2; ++half) {
        const int sub = 2 * c + half, shift = 4 * half;
        block_q5_1& b = *out++;
        set_scales(b, d, dmin, sub, in[i].scales);
        std::uint32_t qh = 0;
        for (int j = 0; j < 32; ++j)
          qh |= static_cast<std::uint32_t>((in[i].qh[j] >> sub) & 1) << j;
        std::memcpy(b.qh, &qh, sizeof qh);
        for (int j = 0; j < 16; ++j)
          b.qs[j] = static_cast<std::uint8_t>(((q[j] >> shift) & 0xF) |
                                              (((q[j + 16] >> shift) & 0xF) << 4));
      }
    }
  }
}

} // namespace

std::optional<dtype> transcoded_type(dtype t) noexcept {
  if (t == dtype::q4_k)
    return dtype::q4_1;
  if (t == dtype::q5_k)
    return dtype::q5_1;
  return std::nullopt;
}

void transcode_row(dtype from, const void* src, void* dst, std::size_t n) noexcept {
  if (from == dtype::q4_k)
    return transcode_q4_k(static_cast<const block_q4_k*>(src), static_cast<block_q4_1*>(dst),
                          n / 256);
  AEG_ASSERT(from == dtype::q5_k, "transcode_row: only Q4_K and Q5_K rows transcode");
  transcode_q5_k(static_cast<const block_q5_k*>(src), static_cast<block_q5_1*>(dst), n / 256);
}

} // namespace aeg::kernels
