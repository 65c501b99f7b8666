// The CPU's 8-row interleaved layouts (quant.hpp's block_q4_1x8, block_q5_1x8, block_q6_kx8,
// block_q3_kx8, block_q2_kx8, block_q8_0x8): built from row-major blocks at load, read back row by
// row for embedding lookups and tests.

#include "coro/assert.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"

#include <cstring>

namespace aeg::kernels {

namespace {

void interleave_q8_0(const std::byte* group, std::size_t stride, std::size_t nb,
                     block_q8_0x8* out) {
  for (std::size_t b = 0; b < nb; ++b)
    for (std::size_t i = 0; i < 8; ++i) {
      const auto& blk = reinterpret_cast<const block_q8_0*>(group + i * stride)[b];
      out[b].d[i] = blk.d;
      for (std::size_t j = 0; j < 32; ++j)
        out[b].qs[q8_0x8_byte(i, j)] = blk.qs[j];
    }
}

void interleave_q4(dtype from, const std::byte* group, std::size_t stride, std::size_t nb,
                   block_q4_1x8* out) {
  for (std::size_t b = 0; b < nb; ++b)
    for (std::size_t i = 0; i < 8; ++i) {
      const std::uint8_t* qs = nullptr;
      if (from == dtype::q4_1) {
        const auto& blk = reinterpret_cast<const block_q4_1*>(group + i * stride)[b];
        out[b].d[i] = blk.d;
        out[b].m[i] = blk.m;
        qs = blk.qs;
      } else { // Q4_0 is Q4_1 with the offset -8·d, exact in f16
        const auto& blk = reinterpret_cast<const block_q4_0*>(group + i * stride)[b];
        out[b].d[i] = blk.d;
        out[b].m[i] = float_to_half(-8.0f * half_to_float(blk.d));
        qs = blk.qs;
      }
      for (std::size_t j = 0; j < 16; ++j)
        out[b].qs[q4_1x8_byte(i, j)] = qs[j];
    }
}

void interleave_q5_1(const std::byte* group, std::size_t stride, std::size_t nb,
                     block_q5_1x8* out) {
  for (std::size_t b = 0; b < nb; ++b)
    for (std::size_t i = 0; i < 8; ++i) {
      const auto& blk = reinterpret_cast<const block_q5_1*>(group + i * stride)[b];
      out[b].d[i] = blk.d;
      out[b].m[i] = blk.m;
      for (std::size_t j = 0; j < 16; ++j)
        out[b].qs[q4_1x8_byte(i, j)] = blk.qs[j];
      std::uint32_t in, word = 0;
      std::memcpy(&in, blk.qh, sizeof in);
      for (std::size_t j = 0; j < 32; ++j)
        word |= ((in >> j) & 1u) << q5_1x8_high_bit(j);
      std::memcpy(out[b].qh + 4 * i, &word, sizeof word);
    }
}

// The 256 6-bit values (0..63) of a Q6_K block in element order, as dequant_q6_k reads them.
void q6_k_values(const block_q6_k& b, std::uint8_t* q) {
  for (int half = 0; half < 2; ++half, q += 128) {
    const std::uint8_t* ql = b.ql + 64 * half;
    const std::uint8_t* qh = b.qh + 32 * half;
    for (int l = 0; l < 32; ++l) {
      q[l] = static_cast<std::uint8_t>((ql[l] & 0xF) | ((qh[l] & 3) << 4));
      q[l + 32] = static_cast<std::uint8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
      q[l + 64] = static_cast<std::uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      q[l + 96] = static_cast<std::uint8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
    }
  }
}

void interleave_q6_k(const std::byte* group, std::size_t stride, std::size_t nb,
                     block_q6_kx8* out) {
  for (std::size_t b = 0; b < nb; ++b)
    for (std::size_t i = 0; i < 8; ++i) {
      const auto& blk = reinterpret_cast<const block_q6_k*>(group + i * stride)[b];
      std::uint8_t q[256];
      q6_k_values(blk, q);
      out[b].d[i] = blk.d;
      for (std::size_t s = 0; s < 8; ++s) {
        auto& sub = out[b].sub[s];
        const std::uint8_t* v = q + 32 * s;
        sub.sc[i] = blk.scales[2 * s];
        sub.sc[8 + i] = blk.scales[2 * s + 1];
        for (std::size_t j = 0; j < 16; ++j)
          sub.qs[q4_1x8_byte(i, j)] = static_cast<std::uint8_t>((v[j] & 0xF) | (v[j + 16] << 4));
        std::uint32_t words[2] = {0, 0};
        for (std::size_t j = 0; j < 32; ++j)
          words[j / 16] |= static_cast<std::uint32_t>(v[j] >> 4) << q6_kx8_high_bits(j).second;
        std::memcpy(sub.qh + 4 * i, &words[0], 4);
        std::memcpy(sub.qh + 32 + 4 * i, &words[1], 4);
      }
    }
}

// The 256 3-bit values (0..7, Q3_K's value plus 4) of a Q3_K block in element order, as
// dequant_q3_k reads them.
void q3_k_values(const block_q3_k& b, std::uint8_t* q) {
  for (int half = 0; half < 2; ++half)
    for (int shift = 0; shift < 8; shift += 2)
      for (int k = 0; k < 32; ++k) {
        const int bit = (b.hmask[k] >> (4 * half + shift / 2)) & 1;
        *q++ = static_cast<std::uint8_t>(((b.qs[32 * half + k] >> shift) & 3) | (bit << 2));
      }
}

void interleave_q3_k(const std::byte* group, std::size_t stride, std::size_t nb,
                     block_q3_kx8* out) {
  for (std::size_t b = 0; b < nb; ++b)
    for (std::size_t i = 0; i < 8; ++i) {
      const auto& blk = reinterpret_cast<const block_q3_k*>(group + i * stride)[b];
      std::uint8_t q[256];
      std::int8_t scales[16];
      q3_k_values(blk, q);
      q3_k_scales(blk, scales);
      out[b].d[i] = blk.d;
      for (std::size_t s = 0; s < 8; ++s) {
        auto& sub = out[b].sub[s];
        const std::uint8_t* v = q + 32 * s;
        sub.sc[i] = scales[2 * s];
        sub.sc[8 + i] = scales[2 * s + 1];
        std::uint32_t low[2] = {0, 0}, third = 0;
        for (std::size_t j = 0; j < 32; ++j) {
          low[j / 16] |= static_cast<std::uint32_t>(v[j] & 3) << q6_kx8_high_bits(j).second;
          third |= static_cast<std::uint32_t>(v[j] >> 2) << q5_1x8_high_bit(j);
        }
        std::memcpy(sub.ql + 4 * i, &low[0], 4);
        std::memcpy(sub.ql + 32 + 4 * i, &low[1], 4);
        std::memcpy(sub.qh + 4 * i, &third, 4);
      }
    }
}

void interleave_q2_k(const std::byte* group, std::size_t stride, std::size_t nb,
                     block_q2_kx8* out) {
  for (std::size_t b = 0; b < nb; ++b)
    for (std::size_t i = 0; i < 8; ++i) {
      const auto& blk = reinterpret_cast<const block_q2_k*>(group + i * stride)[b];
      out[b].d[i] = blk.d;
      out[b].dmin[i] = blk.dmin;
      for (std::size_t s = 0; s < 8; ++s) {
        auto& sub = out[b].sub[s];
        sub.sc[i] = blk.scales[2 * s];
        sub.sc[8 + i] = blk.scales[2 * s + 1];
        // As dequant_q2_k reads them: sub-block s takes bits 2(s % 4) of bytes 32(s / 4)..+31.
        std::uint32_t low[2] = {0, 0};
        for (std::size_t j = 0; j < 32; ++j) {
          const unsigned v = (blk.qs[32 * (s / 4) + j] >> (2 * (s % 4))) & 3u;
          low[j / 16] |= static_cast<std::uint32_t>(v) << q6_kx8_high_bits(j).second;
        }
        std::memcpy(sub.ql + 4 * i, &low[0], 4);
        std::memcpy(sub.ql + 32 + 4 * i, &low[1], 4);
      }
    }
}

} // namespace

std::optional<dtype> interleaved_type(dtype t) noexcept {
  switch (t) {
  case dtype::q4_0:
  case dtype::q4_1:
    return dtype::q4_1x8;
  case dtype::q5_1:
    return dtype::q5_1x8;
  case dtype::q6_k:
    return dtype::q6_kx8;
  case dtype::q3_k:
    return dtype::q3_kx8;
  case dtype::q2_k:
    return dtype::q2_kx8;
  case dtype::q8_0:
    return dtype::q8_0x8;
  default:
    return std::nullopt;
  }
}

dtype deinterleaved_type(dtype x8) noexcept {
  AEG_ASSERT(is_interleaved(x8), "deinterleaved_type: not an interleaved type");
  switch (x8) {
  case dtype::q4_1x8:
    return dtype::q4_1;
  case dtype::q5_1x8:
    return dtype::q5_1;
  case dtype::q6_kx8:
    return dtype::q6_k;
  case dtype::q3_kx8:
    return dtype::q3_k;
  case dtype::q2_kx8:
    return dtype::q2_k;
  default:
    return dtype::q8_0;
  }
}

void interleave_rows(dtype from, const void* src, std::size_t rows, std::size_t cols,
                     void* dst) noexcept {
  AEG_ASSERT(rows % 8 == 0 && interleaved_type(from), "interleave_rows: bad type or row count");
  const std::size_t nb = cols / traits(from).block_elems, stride = row_bytes(from, cols);
  const auto* in = static_cast<const std::byte*>(src);
  for (std::size_t g = 0; g < rows / 8; ++g) {
    const std::byte* group = in + g * 8 * stride;
    if (from == dtype::q6_k)
      interleave_q6_k(group, stride, nb, static_cast<block_q6_kx8*>(dst) + g * nb);
    else if (from == dtype::q3_k)
      interleave_q3_k(group, stride, nb, static_cast<block_q3_kx8*>(dst) + g * nb);
    else if (from == dtype::q2_k)
      interleave_q2_k(group, stride, nb, static_cast<block_q2_kx8*>(dst) + g * nb);
    else if (from == dtype::q8_0)
      interleave_q8_0(group, stride, nb, static_cast<block_q8_0x8*>(dst) + g * nb);
    else if (from == dtype::q5_1)
      interleave_q5_1(group, stride, nb, static_cast<block_q5_1x8*>(dst) + g * nb);
    else
      interleave_q4(from, group, stride, nb, static_cast<block_q4_1x8*>(dst) + g * nb);
  }
}

void dequantize_interleaved_row(dtype t, const void* base, std::size_t row, std::size_t cols,
                                float* y) noexcept {
  const std::size_t nb = cols / 32, g = row / 8, i = row % 8;
  if (t == dtype::q8_0x8) {
    const auto* blk = static_cast<const block_q8_0x8*>(base) + g * nb;
    for (std::size_t b = 0; b < nb; ++b, y += 32) {
      const float d = half_to_float(blk[b].d[i]);
      for (int j = 0; j < 32; ++j)
        y[j] = blk[b].qs[q8_0x8_byte(i, static_cast<std::size_t>(j))] * d;
    }
    return;
  }
  if (t == dtype::q6_kx8) {
    const auto* blk = static_cast<const block_q6_kx8*>(base) + g * (cols / 256);
    for (std::size_t b = 0; b < cols / 256; ++b) {
      const float d = half_to_float(blk[b].d[i]);
      for (const auto& sub : blk[b].sub)
        for (std::size_t j = 0; j < 32; ++j, ++y) // as dequant_q6_k: d * sc, then the value
          *y = d * static_cast<float>(sub.sc[j / 16 * 8 + i]) *
               static_cast<float>(kx8_value(sub, i, j) - 32);
    }
    return;
  }
  if (t == dtype::q3_kx8) {
    const auto* blk = static_cast<const block_q3_kx8*>(base) + g * (cols / 256);
    for (std::size_t b = 0; b < cols / 256; ++b) {
      const float d = half_to_float(blk[b].d[i]);
      for (const auto& sub : blk[b].sub)
        for (std::size_t j = 0; j < 32; ++j, ++y) // as dequant_q3_k: d * sc, then the value
          *y = d * static_cast<float>(sub.sc[j / 16 * 8 + i]) *
               static_cast<float>(kx8_value(sub, i, j) - 4);
    }
    return;
  }
  if (t == dtype::q2_kx8) {
    const auto* blk = static_cast<const block_q2_kx8*>(base) + g * (cols / 256);
    for (std::size_t b = 0; b < cols / 256; ++b) {
      const float d = half_to_float(blk[b].d[i]), dmin = half_to_float(blk[b].dmin[i]);
      for (const auto& sub : blk[b].sub)
        for (std::size_t j = 0; j < 32; ++j, ++y) {
          const std::uint8_t sc = sub.sc[j / 16 * 8 + i];
          // As dequant_q2_k: d * sc and dmin * m first, then the value.
          const float dl = d * static_cast<float>(sc & 0xF),
                      ml = dmin * static_cast<float>(sc >> 4);
          *y = dl * static_cast<float>(kx8_value(sub, i, j)) - ml;
        }
    }
    return;
  }
  if (t == dtype::q5_1x8) {
    const auto* blk = static_cast<const block_q5_1x8*>(base) + g * nb;
    for (std::size_t b = 0; b < nb; ++b, y += 32) {
      const float d = half_to_float(blk[b].d[i]), m = half_to_float(blk[b].m[i]);
      std::uint32_t word;
      std::memcpy(&word, blk[b].qh + 4 * i, sizeof word);
      for (std::size_t j = 0; j < 16; ++j) {
        const std::uint8_t q = blk[b].qs[q4_1x8_byte(i, j)];
        const unsigned h0 = (word >> q5_1x8_high_bit(j)) & 1;
        const unsigned h1 = (word >> q5_1x8_high_bit(j + 16)) & 1;
        y[j] = static_cast<float>((q & 0xF) | (h0 << 4)) * d + m;
        y[j + 16] = static_cast<float>((q >> 4) | (h1 << 4)) * d + m;
      }
    }
    return;
  }
  AEG_ASSERT(t == dtype::q4_1x8, "dequantize_interleaved_row: not an interleaved type");
  const auto* blk = static_cast<const block_q4_1x8*>(base) + g * nb;
  for (std::size_t b = 0; b < nb; ++b, y += 32) {
    const float d = half_to_float(blk[b].d[i]), m = half_to_float(blk[b].m[i]);
    for (std::size_t j = 0; j < 16; ++j) {
      const std::uint8_t q = blk[b].qs[q4_1x8_byte(i, j)];
      y[j] = static_cast<float>(q & 0xF) * d + m;
      y[j + 16] = static_cast<float>(q >> 4) * d + m;
    }
  }
}

} // namespace aeg::kernels
