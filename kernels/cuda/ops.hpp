#pragma once

#include "coro/error.hpp"
#include "kernels/device_scratch.hpp"
#include "kernels/kv_geometry.hpp"
#include "kernels/matrix.hpp"
#include "kernels/sampling_row.hpp"

#include <cstddef>
#include <cstdint>

// CUDA launchers of the ops in kernels/ops.hpp (same shapes and meanings). Host-compilable;
// `stream` is a cudaStream_t, `blas` a cublasHandle_t. Each checks its launch and returns
// `errc::device_error` with CUDA's message on failure. Never throws.
namespace aeg::kernels::cuda {

/// A cuBLAS handle bound to `stream`, or an error.
[[nodiscard]] result<void*> create_blas(void* stream) noexcept;
void destroy_blas(void* blas) noexcept;

[[nodiscard]] result<void> embed(void* stream, const matrix& table, const std::int32_t* tokens,
                                 std::size_t n, float* out) noexcept;
[[nodiscard]] result<void> rmsnorm(void* stream, const float* x, const float* weight,
                                   std::size_t rows, std::size_t dim, float eps,
                                   float* out) noexcept;
/// Half-precision copies of the activations live in `scratch` (rows * w.cols * 2 bytes).
[[nodiscard]] result<void> matmul(void* stream, void* blas, const matrix& w, const float* x,
                                  std::size_t rows, float* y, void* scratch) noexcept;
[[nodiscard]] result<void> rope(void* stream, float* x, std::size_t rows, std::size_t heads,
                                std::size_t head_dim, std::size_t n_rot,
                                const std::int32_t* positions, float base,
                                const float* freq_factors) noexcept;
[[nodiscard]] result<void> kv_store(void* stream, const kv_geometry& g, std::size_t layer,
                                    const float* k, const float* v, std::size_t rows,
                                    const std::int32_t* slots, void* kv_base) noexcept;
/// Splits long keys across blocks when the queries alone cannot fill the GPU; their partial
/// states live in `scratch`, grown on the stream as needed.
[[nodiscard]] result<void> attention(void* stream, const kv_geometry& g, std::size_t layer,
                                     const float* q, std::size_t rows, std::size_t heads,
                                     const std::int32_t* positions, const std::int32_t* row_seq,
                                     const std::int32_t* block_tables, std::size_t max_blocks,
                                     const void* kv_base, float scale, float* out,
                                     attention_hint hint, device_scratch& scratch) noexcept;
/// Frees `scratch` once the stream's work before this call is done (stream-ordered).
void release(void* stream, device_scratch& scratch) noexcept;
[[nodiscard]] result<void> swiglu(void* stream, const float* gate, const float* up, std::size_t n,
                                  float* out) noexcept;
[[nodiscard]] result<void> add(void* stream, float* x, const float* y, std::size_t n) noexcept;
[[nodiscard]] result<void> add_bias(void* stream, float* x, const float* bias, std::size_t rows,
                                    std::size_t width) noexcept;
[[nodiscard]] result<void> gather_rows(void* stream, const float* x, const std::int32_t* rows,
                                       std::size_t n, std::size_t dim, float* out) noexcept;
[[nodiscard]] result<void> sample(void* stream, const float* logits, std::size_t rows,
                                  std::size_t vocab, const sampling_row* params,
                                  std::int32_t* out) noexcept;

} // namespace aeg::kernels::cuda
