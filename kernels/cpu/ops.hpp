#pragma once

#include "kernels/kv_geometry.hpp"
#include "kernels/matrix.hpp"
#include "kernels/sampling_row.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

// CPU implementations of the ops in kernels/ops.hpp; they run on the calling thread (a CPU
// stream's worker) and its compute helpers. Shapes and meanings are documented there.
namespace aeg::kernels::cpu {

void embed(const matrix& table, const std::int32_t* tokens, std::size_t n, float* out);
void rmsnorm(const float* x, const float* weight, std::size_t rows, std::size_t dim, float eps,
             float* out);
void rope(float* x, std::size_t rows, std::size_t heads, std::size_t head_dim, std::size_t n_rot,
          const std::int32_t* positions, float base, const float* freq_factors);
void kv_store(const kv_geometry& g, std::size_t layer, const float* k, const float* v,
              std::size_t rows, const std::int32_t* slots, void* kv_base);
void attention(const kv_geometry& g, std::size_t layer, const float* q, std::size_t rows,
               std::size_t heads, const std::int32_t* positions, const std::int32_t* row_seq,
               const std::int32_t* block_tables, std::size_t max_blocks, const void* kv_base,
               float scale, float* out);
/// The instruction sets attention has code for, slowest first.
enum class attention_isa { portable, avx2, avx512 };
/// The best one this processor runs (what `attention` uses).
attention_isa best_attention_isa() noexcept;
/// `attention` in `isa` (or the best this processor runs, if it lacks `isa`), for comparing
/// them. AVX-512 takes head sizes that are multiples of 16, AVX2 multiples of 8 up to 256; other
/// heads take the next slower code.
void attention(const kv_geometry& g, std::size_t layer, const float* q, std::size_t rows,
               std::size_t heads, const std::int32_t* positions, const std::int32_t* row_seq,
               const std::int32_t* block_tables, std::size_t max_blocks, const void* kv_base,
               float scale, float* out, attention_isa isa);
void swiglu(const float* gate, const float* up, std::size_t n, float* out);
void add(float* x, const float* y, std::size_t n);
void add_bias(float* x, const float* bias, std::size_t rows, std::size_t width);
void gather_rows(const float* x, const std::int32_t* rows, std::size_t n, std::size_t dim,
                 float* out);
void sample(const float* logits, std::size_t rows, std::size_t vocab, const sampling_row* params,
            std::int32_t* out);

/// The tokens `p` may pick from one row: the top-k and top-p cut of sampling_row, highest logit
/// first (lower index first among equals); every token, in vocabulary order, when nothing is cut
/// (greedy included).
std::vector<std::int32_t> sampling_candidates(const float* logits, std::size_t vocab,
                                              const sampling_row& p);

/// The token one row picks (see sampling_row); exposed for tests.
std::int32_t sample_row(const float* logits, std::size_t vocab, const sampling_row& p);

} // namespace aeg::kernels::cpu
