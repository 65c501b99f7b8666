#include "kernels/cpu/matmul.hpp"

#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/quant.hpp"

#include <algorithm>

namespace aeg::kernels::cpu {

std::size_t matmul_scratch_bytes(const matrix& w, std::size_t rows) noexcept {
  if (!takes_quantized_activations(w.type))
    return 0;
  return rows * (w.cols / 32) * sizeof(block_q8a);
}

void matmul(const matrix& w, const float* x, std::size_t rows, float* y, void* scratch) {
  const bool quantized = takes_quantized_activations(w.type);
  auto* xq = static_cast<block_q8a*>(scratch);
  const std::size_t blocks_per_row = w.cols / 32;
  if (quantized)
    parallel_for(rows, 16, [&](std::size_t begin, std::size_t end) {
      for (std::size_t r = begin; r < end; ++r)
        quantize_activations(x + r * w.cols, xq + r * blocks_per_row, w.cols);
    });
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
