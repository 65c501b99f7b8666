#pragma once

#include "coro/error.hpp"
#include "kernels/context.hpp"
#include "kernels/kv_geometry.hpp"
#include "kernels/matrix.hpp"
#include "kernels/sampling_row.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

// The ops of a llama forward pass. Each enqueues its work on the context's stream and returns at
// once; pointers are device memory of that stream's device and must stay valid until the work
// has run (await an event recorded after it). Activations are f32 everywhere; weights and KV use
// the types the backend computes in (kernels::cpu::computes_in; f16/bf16 on CUDA). Errors:
// `errc::unavailable` when this build has no kernel for the backend, `errc::device_error` when
// a launch fails, `errc::invalid_argument` for unsupported types.
namespace aeg::kernels {

/// out[i] = row tokens[i] of `table` as floats. [n, table.cols]
[[nodiscard]] result<void> embed(context& ctx, const matrix& table, const std::int32_t* tokens,
                                 std::size_t n, float* out);

/// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight. x, out: [rows, dim]; may alias.
[[nodiscard]] result<void> rmsnorm(context& ctx, const float* x, const float* weight,
                                   std::size_t rows, std::size_t dim, float eps, float* out);

/// Scratch bytes `matmul` needs on this backend for `rows` rows.
std::size_t matmul_scratch_bytes(gpu::backend_kind kind, const matrix& w, std::size_t rows);

/// y = x · wᵀ: x [rows, w.cols], y [rows, w.rows]. `scratch` holds matmul_scratch_bytes.
[[nodiscard]] result<void> matmul(context& ctx, const matrix& w, const float* x, std::size_t rows,
                                  float* y, void* scratch);

/// y_i = x · w_iᵀ for matrices that share their input (a layer's q, k, v; gate and up): on the
/// CPU the input is quantized once and one job covers them all. `scratch` holds
/// matmul_scratch_bytes of the widest.
[[nodiscard]] result<void> matmul(context& ctx, std::span<const matrix> ws, const float* x,
                                  std::size_t rows, std::span<float* const> ys, void* scratch);

/// Rotary embedding in place, adjacent pairs (llama as GGUF stores it) over the first `n_rot`
/// dims of each head: x [rows, heads, head_dim], positions [rows]. Pair i turns by
/// position · base^(-2i/n_rot), divided by freq_factors[i] where given (n_rot/2 floats of device
/// memory: Llama 3's `rope_freqs`).
[[nodiscard]] result<void> rope(context& ctx, float* x, std::size_t rows, std::size_t heads,
                                std::size_t head_dim, std::size_t n_rot,
                                const std::int32_t* positions, float base,
                                const float* freq_factors = nullptr);

/// Writes each row's K and V ([rows, kv_heads * head_dim]) of `layer` into the paged cache at
/// slot slots[r] = block * kv_geometry::block_tokens + offset.
[[nodiscard]] result<void> kv_store(context& ctx, const kv_geometry& g, std::size_t layer,
                                    const float* k, const float* v, std::size_t rows,
                                    const std::int32_t* slots, void* kv_base);

/// Causal attention of `layer` over the paged cache with grouped KV heads. Row r is a query at
/// position positions[r] of sequence row_seq[r]; it attends to that sequence's keys 0..position,
/// found through block_tables[row_seq[r] * max_blocks + position / kv_geometry::block_tokens]. q,
/// out: [rows, heads, head_dim]; scores are scaled by `scale`. The rows of one sequence are
/// consecutive. `hint` is what the caller knows of the step on the host, which a GPU kernel
/// cannot read from device memory before it is launched: it shapes the work, never the result's
/// meaning.
[[nodiscard]] result<void> attention(context& ctx, const kv_geometry& g, std::size_t layer,
                                     const float* q, std::size_t rows, std::size_t heads,
                                     const std::int32_t* positions, const std::int32_t* row_seq,
                                     const std::int32_t* block_tables, std::size_t max_blocks,
                                     const void* kv_base, float scale, float* out,
                                     attention_hint hint = {});

/// out = silu(gate) * up, n values. May alias gate.
[[nodiscard]] result<void> swiglu(context& ctx, const float* gate, const float* up, std::size_t n,
                                  float* out);

/// x += y, n values.
[[nodiscard]] result<void> add(context& ctx, float* x, const float* y, std::size_t n);

/// x[r] += bias for every row r: x [rows, width], bias [width].
[[nodiscard]] result<void> add_bias(context& ctx, float* x, const float* bias, std::size_t rows,
                                    std::size_t width);

/// out[i] = x[rows[i]], rows of `dim` floats.
[[nodiscard]] result<void> gather_rows(context& ctx, const float* x, const std::int32_t* rows,
                                       std::size_t n, std::size_t dim, float* out);

/// Time spent in one op on CPU streams while profiling.
struct op_time {
  std::string name;
  double seconds = 0;
  std::size_t calls = 0;
};
/// Starts (or stops) timing every op that runs on a CPU stream, from zero. For benchmarks.
void profile_cpu_ops(bool on);
/// What was timed since `profile_cpu_ops(true)`.
std::vector<op_time> cpu_op_times();

/// out[r] = the token row r of `logits` ([rows, vocab]) picks under params[r] (sampling_row).
[[nodiscard]] result<void> sample(context& ctx, const float* logits, std::size_t rows,
                                  std::size_t vocab, const sampling_row* params, std::int32_t* out);

} // namespace aeg::kernels
