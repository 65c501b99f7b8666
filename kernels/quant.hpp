#pragma once

#include "kernels/dtype.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>

namespace aeg::kernels {

// Block layouts, byte for byte as ggml stores them in GGUF files (ggml-common.h). Scales are IEEE
// binary16 bits. Element order inside a block is the order `dequantize_row` writes.

/// 32 weights: y = (q - 8) * d, q in low nibbles (elements 0..15) then high nibbles (16..31).
struct block_q4_0 {
  std::uint16_t d;
  std::uint8_t qs[16];
};
/// 32 weights: y = q * d + m, nibbles as in Q4_0.
struct block_q4_1 {
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qs[16];
};
/// 32 weights: y = (q - 16) * d, 4 low bits in nibbles, the fifth bit in `qh`.
struct block_q5_0 {
  std::uint16_t d;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};
/// 32 weights: y = q * d + m, 4 low bits in nibbles as in Q4_1, the fifth bit of value j in bit j
/// of `qh` (little-endian).
struct block_q5_1 {
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};
/// 32 weights: y = q * d.
struct block_q8_0 {
  std::uint16_t d;
  std::int8_t qs[32];
};
/// 256 weights in 8 sub-blocks of 32 with 6-bit scales and mins.
struct block_q4_k {
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[12];
  std::uint8_t qs[128];
};
/// 256 weights in 16 sub-blocks of 16 with 8-bit scales; `d` comes last.
struct block_q6_k {
  std::uint8_t ql[128];
  std::uint8_t qh[64];
  std::int8_t scales[16];
  std::uint16_t d;
};

/// 256 weights in 16 sub-blocks of 16: 2-bit values, a 4-bit scale and a 4-bit min per sub-block.
struct block_q2_k {
  std::uint8_t scales[16]; ///< low nibble: scale, high nibble: min
  std::uint8_t qs[64];
  std::uint16_t d, dmin;
};
/// 256 weights in 16 sub-blocks of 16: 3-bit values (2 low bits in qs, the high bit in hmask),
/// 6-bit signed scales packed in 12 bytes.
struct block_q3_k {
  std::uint8_t hmask[32];
  std::uint8_t qs[64];
  std::uint8_t scales[12];
  std::uint16_t d;
};
/// 256 weights in 8 sub-blocks of 32: 5-bit values (4 low bits in qs, the fifth in qh), 6-bit
/// scales and mins packed as Q4_K's.
struct block_q5_k {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qh[32];
  std::uint8_t qs[128];
};

static_assert(sizeof(block_q4_0) == 18 && sizeof(block_q4_1) == 20 && sizeof(block_q5_0) == 22 &&
              sizeof(block_q8_0) == 34 && sizeof(block_q4_k) == 144 && sizeof(block_q6_k) == 210);
/// 32 weights: 4-bit indices into a fixed non-uniform table of 16 values, one f16 scale.
struct block_iq4_nl {
  std::uint16_t d;
  std::uint8_t qs[16];
};
/// 256 weights in 8 sub-blocks of 32: IQ4_NL's table indices with a 6-bit scale per sub-block
/// (low 4 bits in scales_l, high 2 in scales_h).
struct block_iq4_xs {
  std::uint16_t d;
  std::uint16_t scales_h;
  std::uint8_t scales_l[4];
  std::uint8_t qs[128];
};

static_assert(sizeof(block_q2_k) == 84 && sizeof(block_q3_k) == 110 && sizeof(block_q5_k) == 176 &&
              sizeof(block_q5_1) == 24);
static_assert(sizeof(block_iq4_nl) == 18 && sizeof(block_iq4_xs) == 136);

/// 8 rows of Q4_1 (or Q4_0, as Q4_1 with offset -8·d) for one block of 32 columns, as the CPU
/// computes with them: `d` and `m` in row order; the 16 nibble bytes of the rows in 4 groups of
/// 32 bytes, group p holding bytes 4p..4p+3 of row 0, then of row 1, ... (`q4_1x8_byte`). Byte j
/// of a Q4_1 row holds columns j (low nibble) and j + 16 (high), so one 256-bit load of a group
/// gives every row 4 of its columns in its own 32-bit lane: a dot product with 4 activations
/// broadcast lands in the row's lane, and no horizontal add is needed.
struct block_q4_1x8 {
  std::uint16_t d[8];
  std::uint16_t m[8];
  std::uint8_t qs[128];
};
/// 8 rows of Q8_0 for one block of 32 columns: `d` in row order; the values in 8 groups of 32
/// bytes, group t holding columns 4t..4t+3 of row 0, then of row 1, ... (`q8_0x8_byte`), laid
/// out for the same lane-per-row products as Q4_1x8.
struct block_q8_0x8 {
  std::uint16_t d[8];
  std::int8_t qs[256];
};
/// 8 rows of Q5_1 for one block of 32 columns: `d`, `m` and the low 4 bits in `qs` exactly as in
/// Q4_1x8; the fifth bits in `qh`, one little-endian 32-bit word per row (row r at bytes
/// 4r..4r+3), whose bit 8k + g holds column 4g + k (`q5_1x8_high_bit`). One 256-bit load of `qh`
/// then gives every row its word in its own lane, and shifting the lanes left by 4 − p (right
/// by p) puts the fifth bits of nibble group p's low (high) nibbles at bit 4 of each byte.
struct block_q5_1x8 {
  std::uint16_t d[8];
  std::uint16_t m[8];
  std::uint8_t qh[32];
  std::uint8_t qs[128];
};
static_assert(sizeof(block_q4_1x8) == 8 * 20 && sizeof(block_q8_0x8) == 8 * 34 &&
              sizeof(block_q5_1x8) == 8 * 24);

/// 8 rows of Q6_K for one super-block of 256 columns, in 8 sub-blocks of 32 columns, exactly:
/// x = d·sc·(q − 32) with the rows' `d`, each row's two 8-bit scales of a sub-block (columns 0..15
/// in `sc[r]`, 16..31 in `sc[8 + r]`, so a sign-extending load gives each row its scale in its
/// lane) and its 6-bit `q`: the low 4 bits in nibbles as in Q4_1x8's `qs`, the high 2 in `qh`,
/// one little-endian 32-bit word per row and half (columns 0..15 of row r at bytes 4r..4r+3,
/// 16..31 at 32 + 4r), whose bits 8k + 2p and 8k + 2p + 1 hold column 4p + k of the half
/// (`q6_kx8_high_bits`): shifted left by 4 − 2p (right by 2 for p = 3) they sit at bits 4 and 5
/// of byte k, beside the nibbles of group p. The same 210 bytes a row as Q6_K.
struct block_q6_kx8 {
  std::uint16_t d[8];
  struct sub_block {
    std::int8_t sc[16];
    std::uint8_t qs[128];
    std::uint8_t qh[64];
  } sub[8];
};
static_assert(sizeof(block_q6_kx8) == 8 * sizeof(block_q6_k));

/// 8 rows of Q3_K for one super-block of 256 columns, in 8 sub-blocks of 32 columns, exactly:
/// x = d·sc·(q − 4) with the rows' `d`, each row's two scales of a sub-block (Q3_K's 6-bit
/// scales minus 32, placed as Q6_Kx8's) and its 3-bit `q` (Q3_K's 2 low bits, plus 4 where its
/// hmask bit is set): the 2 low bits in `ql`, one 32-bit word per row and half placed as Q6_Kx8's
/// `qh` (bits 8k + 2p, 8k + 2p + 1 hold column 4p + k of the half: `q6_kx8_high_bits`), the
/// third bit in `qh`, one word per row placed as Q5_1x8's (`q5_1x8_high_bit`). 114 bytes a row
/// where Q3_K takes 110: the scales take 8 bits here, 6 in the file.
struct block_q3_kx8 {
  std::uint16_t d[8];
  struct sub_block {
    std::int8_t sc[16];
    std::uint8_t ql[64];
    std::uint8_t qh[32];
  } sub[8];
};
static_assert(sizeof(block_q3_kx8) == 8 * 114);

/// 8 rows of Q2_K for one super-block of 256 columns, in 8 sub-blocks of 32 columns, exactly:
/// x = d·sc·q − dmin·m with the rows' `d` and `dmin`, each row's two scale bytes of a sub-block
/// as Q2_K stores them (scale in the low nibble, min in the high; columns 0..15 in `sc[r]`,
/// 16..31 in `sc[8 + r]`, so a zero-extending load gives each row its byte in its lane) and its
/// 2-bit `q` in `ql`, placed as Q3_Kx8's (`q6_kx8_high_bits`). The same 84 bytes a row as Q2_K.
struct block_q2_kx8 {
  std::uint16_t d[8];
  std::uint16_t dmin[8];
  struct sub_block {
    std::uint8_t sc[16];
    std::uint8_t ql[64];
  } sub[8];
};
static_assert(sizeof(block_q2_kx8) == 8 * sizeof(block_q2_k));

/// Q3_K's sixteen scales (6 bits each, the low 4 in bytes 0..7, the high 2 in bytes 8..11),
/// minus 32, in element order.
inline void q3_k_scales(const block_q3_k& b, std::int8_t* out) noexcept {
  for (int i = 0; i < 16; ++i) {
    const int low = i < 8 ? b.scales[i] & 0xF : b.scales[i - 8] >> 4;
    const int high = (b.scales[8 + i % 4] >> (2 * (i / 4))) & 3;
    out[i] = static_cast<std::int8_t>((low | (high << 4)) - 32);
  }
}

/// Where column `j` (0..31) of a Q6_Kx8 sub-block has its 2 high bits: byte offset of the row's
/// word (add 4r) and the shift of the bits in it.
constexpr std::pair<std::size_t, unsigned> q6_kx8_high_bits(std::size_t j) noexcept {
  const std::size_t c = j % 16;
  return {j / 16 * 32, static_cast<unsigned>(8 * (c % 4) + 2 * (c / 4))};
}

/// The bit of row `r`'s `qh` word in a Q5_1x8 block that holds column `j`'s (0..31) fifth bit.
constexpr unsigned q5_1x8_high_bit(std::size_t j) noexcept {
  return static_cast<unsigned>(8 * (j % 4) + j / 4);
}

/// Sub-block `j`'s (0..7) 6-bit scale and min from the 12 packed bytes of a Q4_K or Q5_K block
/// (ggml's get_scale_min_k4).
inline void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& sc, std::uint8_t& m) noexcept {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/// Where column `j` (0..31) of row `r` (0..7) lies in a Q8_0x8 block's `qs`.
constexpr std::size_t q8_0x8_byte(std::size_t r, std::size_t j) noexcept {
  return j / 4 * 32 + 4 * r + j % 4;
}
/// Where byte `j` (0..15) of row `r` (0..7)'s Q4_1 nibbles lies in a Q4_1x8 block's `qs`.
constexpr std::size_t q4_1x8_byte(std::size_t r, std::size_t j) noexcept {
  return j / 4 * 32 + 4 * r + j % 4;
}

/// Value `c` (0..31) of row `i` (0..7) of a Q6_Kx8 sub-block, before its offset of 32 (what the
/// readers and the portable kernels decode; the vector kernels take whole words at once).
inline int kx8_value(const block_q6_kx8::sub_block& sub, std::size_t i, std::size_t c) noexcept {
  const std::uint8_t lo = sub.qs[q4_1x8_byte(i, c % 16)];
  const auto [off, shift] = q6_kx8_high_bits(c);
  std::uint32_t word;
  std::memcpy(&word, sub.qh + off + 4 * i, sizeof word);
  return (c < 16 ? lo & 0xF : lo >> 4) | static_cast<int>(((word >> shift) & 3) << 4);
}
/// Value `c` of row `i` of a Q3_Kx8 sub-block, before its offset of 4.
inline int kx8_value(const block_q3_kx8::sub_block& sub, std::size_t i, std::size_t c) noexcept {
  const auto [off, shift] = q6_kx8_high_bits(c);
  std::uint32_t low, third;
  std::memcpy(&low, sub.ql + off + 4 * i, sizeof low);
  std::memcpy(&third, sub.qh + 4 * i, sizeof third);
  return static_cast<int>(((low >> shift) & 3) | (((third >> q5_1x8_high_bit(c)) & 1) << 2));
}
/// Value `c` of row `i` of a Q2_Kx8 sub-block.
inline int kx8_value(const block_q2_kx8::sub_block& sub, std::size_t i, std::size_t c) noexcept {
  const auto [off, shift] = q6_kx8_high_bits(c);
  std::uint32_t low;
  std::memcpy(&low, sub.ql + off + 4 * i, sizeof low);
  return static_cast<int>((low >> shift) & 3);
}

/// An activation block for the CPU's integer dot products: 32 values as `q * d`, with
/// `s = d * sum(q)` so that Q4_1's offset term costs one multiply per block. Not a file format.
struct block_q8a {
  float d;
  float s;
  std::int8_t qs[32];
};

/// Writes the `n` values of a row of type `t` (any dtype) to `dst` as floats. The reference
/// every kernel is checked against.
void dequantize_row(dtype t, const void* src, float* dst, std::size_t n) noexcept;

/// Encodes `n` floats as a row of type `t`: F32, F16, BF16, Q8_0, Q4_0, Q4_1 or Q5_1 (the types
/// the CPU computes in and tests write). Returns false for a type it cannot encode.
bool quantize_row(dtype t, const float* src, void* dst, std::size_t n) noexcept;

/// Whether `quantize_row` can encode `t`.
bool can_quantize(dtype t) noexcept;

/// The plain type that `transcode_row` rewrites rows of `t` into without going through floats
/// (Q4_K → Q4_1, Q5_K → Q5_1), or nullopt.
std::optional<dtype> transcoded_type(dtype t) noexcept;

/// Rewrites `n` values of type `from` (a multiple of its block size) as `transcoded_type(from)`
/// at `dst`, keeping the stored integers.
///
/// Q4_K → Q4_1: a Q4_K sub-block of 32 holds x = d·sc·q − dmin·m (f16 d and dmin, 6-bit sc and
/// m), which is Q4_1's x = d'·q + m' with d' = d·sc and m' = −dmin·m. Each sub-block becomes one
/// Q4_1 block with the same 4-bit q (moved from Q4_K's nibble order, where a 64-value group's 32
/// bytes hold values 0..31 in their low nibbles and 32..63 in their high ones, to Q4_1's, where
/// byte j holds values j and j + 16) and d', m' rounded to f16 once (the float products are
/// exact). That rounding is the only error: per value at most 15·|Δd'| + |Δm'| ≤
/// 2⁻¹¹·(15·|d·sc| + |dmin·m|), plus 2⁻²¹ where a product falls below f16's normal range; a
/// product of more than 11 significant bits is all it takes to round, so most blocks move by a
/// little and those whose products fit (d·sc with sc a power of two, say) not at all. Products
/// past f16's range (65504) become infinite; a quantizer's d is the largest sub-block scale
/// over 63, so its d·sc is at most that scale, itself of the weights' size.
///
/// Q5_K → Q5_1 likewise: Q5_K's sub-blocks hold x = d·sc·q − dmin·m with 5-bit q (4 low bits in
/// Q4_K's nibble order, the fifth of value l of 64-value group c in bit 2c (first 32) or 2c + 1
/// (next 32) of qh[l]), and become Q5_1 blocks with the same q (fifth bits in Q5_1's qh) and the
/// same rounding of d' and m'. The bound has 31 in place of 15: 2⁻¹¹·(31·|d·sc| + |dmin·m|).
void transcode_row(dtype from, const void* src, void* dst, std::size_t n) noexcept;

/// The CPU's interleaved compute type for matrices stored as `t` (Q4_0, Q4_1 → Q4_1x8; Q5_1 →
/// Q5_1x8; Q6_K → Q6_Kx8; Q3_K → Q3_Kx8; Q2_K → Q2_Kx8; Q8_0 → Q8_0x8), or nullopt.
std::optional<dtype> interleaved_type(dtype t) noexcept;

/// The row-major type whose rows the interleaved type `x8` holds (Q4_1x8 → Q4_1, Q5_1x8 → Q5_1,
/// Q6_Kx8 → Q6_K, Q3_Kx8 → Q3_K, Q2_Kx8 → Q2_K, Q8_0x8 → Q8_0).
dtype deinterleaved_type(dtype x8) noexcept;

/// Rewrites a row-major matrix of `rows` (a multiple of 8) rows of type `from` into the layout of
/// `interleaved_type(from)` at `dst` (the same number of bytes).
void interleave_rows(dtype from, const void* src, std::size_t rows, std::size_t cols,
                     void* dst) noexcept;

/// Row `row` of an interleaved matrix at `base` as `cols` floats.
void dequantize_interleaved_row(dtype t, const void* base, std::size_t row, std::size_t cols,
                                float* dst) noexcept;

/// Quantizes `n` activations (a multiple of 32) to Q8 activation blocks.
void quantize_activations(const float* src, block_q8a* dst, std::size_t n) noexcept;

} // namespace aeg::kernels
