#pragma once

#include "kernels/dtype.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>

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

static_assert(sizeof(block_q2_k) == 84 && sizeof(block_q3_k) == 110 && sizeof(block_q5_k) == 176);
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
static_assert(sizeof(block_q4_1x8) == 8 * 20 && sizeof(block_q8_0x8) == 8 * 34);

/// Where column `j` (0..31) of row `r` (0..7) lies in a Q8_0x8 block's `qs`.
constexpr std::size_t q8_0x8_byte(std::size_t r, std::size_t j) noexcept {
  return j / 4 * 32 + 4 * r + j % 4;
}
/// Where byte `j` (0..15) of row `r` (0..7)'s Q4_1 nibbles lies in a Q4_1x8 block's `qs`.
constexpr std::size_t q4_1x8_byte(std::size_t r, std::size_t j) noexcept {
  return j / 4 * 32 + 4 * r + j % 4;
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

/// Encodes `n` floats as a row of type `t`: F32, F16, BF16, Q8_0, Q4_0 or Q4_1 (the types the
/// CPU computes in and tests write). Returns false for a type it cannot encode.
bool quantize_row(dtype t, const float* src, void* dst, std::size_t n) noexcept;

/// Whether `quantize_row` can encode `t`.
bool can_quantize(dtype t) noexcept;

/// The plain type that `transcode_row` rewrites rows of `t` into without going through floats
/// (Q4_K → Q4_1), or nullopt.
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
void transcode_row(dtype from, const void* src, void* dst, std::size_t n) noexcept;

/// The CPU's interleaved compute type for matrices stored as `t` (Q4_0, Q4_1 → Q4_1x8; Q8_0 →
/// Q8_0x8), or nullopt.
std::optional<dtype> interleaved_type(dtype t) noexcept;

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
