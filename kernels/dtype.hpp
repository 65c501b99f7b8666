#pragma once

#include "coro/error.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace aeg::kernels {

/// Element types of weights, activations and KV caches. Quantized types store `block_elems`
/// values in `block_bytes` bytes with ggml's block layouts (see kernels/quant.hpp). The `x8`
/// types are the CPU's compute layouts: 8 rows interleaved block by block (`block_bytes` is per
/// row, so sizes work out as for their plain twins, but a row is not contiguous).
enum class dtype : std::uint8_t {
  f32,
  f16,
  bf16,
  q8_0,
  q4_0,
  q4_1,
  q5_0,
  q4_k,
  q6_k,
  q4_1x8,
  q8_0x8,
  q2_k, // after the compute layouts: the values above name cached images' types
  q3_k,
  q5_k,
  iq4_nl,
  iq4_xs,
  q5_1,   // the row-major type Q5_K transcodes into (GGUF files holding it are refused)
  q5_1x8, // Q5_1 with 8 rows interleaved, as the CPU computes with it
  q6_kx8, // Q6_K with 8 rows interleaved, as the CPU computes with it
  q3_kx8, // Q3_K with 8 rows interleaved, as the CPU computes with it
  q2_kx8, // Q2_K with 8 rows interleaved, as the CPU computes with it
};

/// Block geometry of a dtype.
struct dtype_traits {
  std::string_view name; ///< "Q4_1"
  std::size_t block_elems;
  std::size_t block_bytes;
  bool quantized;
};

/// Traits of `t`.
const dtype_traits& traits(dtype t) noexcept;

/// Bytes of one row of `n` values of type `t`; `n` must be a multiple of the block size.
inline std::size_t row_bytes(dtype t, std::size_t n) noexcept {
  const auto& tr = traits(t);
  return n / tr.block_elems * tr.block_bytes;
}

/// Whether `t` interleaves 8 rows (its matrices have a multiple of 8 rows).
inline bool is_interleaved(dtype t) noexcept {
  return t == dtype::q4_1x8 || t == dtype::q8_0x8 || t == dtype::q5_1x8 || t == dtype::q6_kx8 ||
         t == dtype::q3_kx8 || t == dtype::q2_kx8;
}

/// Bytes of one element of an unquantized type (f32 4, f16/bf16 2).
inline std::size_t element_bytes(dtype t) noexcept {
  return traits(t).block_bytes;
}

} // namespace aeg::kernels
