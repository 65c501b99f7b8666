#pragma once

#include "kernels/dtype.hpp"

#include <cstddef>

namespace aeg::kernels {

/// A weight matrix in device memory: `rows` rows (outputs) of `cols` values (inputs) of type
/// `type`, rows contiguous (GGUF's [ne0 = cols, ne1 = rows]). Borrowed: the caller keeps it alive
/// until the work using it has finished.
struct matrix {
  dtype type = dtype::f32;
  const void* data = nullptr;
  std::size_t rows = 0;
  std::size_t cols = 0;

  std::size_t row_bytes() const noexcept { return kernels::row_bytes(type, cols); }
  std::size_t bytes() const noexcept { return rows * row_bytes(); }
};

} // namespace aeg::kernels
