#pragma once

#include "coro/error.hpp"
#include "kernels/dtype.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace aeg::models::gguf {

/// Types of metadata values (GGUF v2/v3).
enum class value_type : std::uint32_t {
  uint8 = 0,
  int8 = 1,
  uint16 = 2,
  int16 = 3,
  uint32 = 4,
  int32 = 5,
  float32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  uint64 = 10,
  int64 = 11,
  float64 = 12,
};

/// Tensor element types this runtime reads (ids as ggml numbers them).
enum class tensor_type : std::uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q8_0 = 8,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  iq4_nl = 20,
  iq4_xs = 23,
  bf16 = 30,
};

/// Block geometry of a tensor type: `block_elems` values are stored in `block_bytes` bytes.
struct type_traits {
  std::string_view name;
  std::size_t block_elems;
  std::size_t block_bytes;
};

/// Traits of `type`, or `errc::invalid_argument` naming the type (by ggml's name when it is a
/// known but unsupported one, e.g. "IQ2_XXS").
result<type_traits> traits_of(std::uint32_t type);

/// "Q4_1" for a supported type.
std::string_view name_of(tensor_type type);

/// The kernels' element type for a tensor type. Every supported tensor type has one, with the
/// same block layout, so tensor bytes from a file go to `kernels::dequantize_row` as they are.
kernels::dtype to_dtype(tensor_type type) noexcept;

/// The tensor type that stores `type` in a GGUF file (the inverse of `to_dtype`).
tensor_type to_tensor_type(kernels::dtype type) noexcept;

} // namespace aeg::models::gguf
