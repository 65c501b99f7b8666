#pragma once

#include "coro/error.hpp"
#include "gpu/device.hpp"
#include "kernels/matrix.hpp"
#include "models/llama/config.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace aeg::models {

namespace gguf {
class file;
}

/// The number types one backend computes in.
struct compute_format {
  gpu::backend_kind backend = gpu::backend_kind::cpu;
  /// CUDA: the type of weights and KV (f16 or bf16). The CPU keeps quantized weights and f32 KV.
  kernels::dtype half_type = kernels::dtype::f16;
  /// CPU: convert every matrix to this type instead (e.g. f32 for an unquantized reference).
  std::optional<kernels::dtype> cpu_weight_type;
  /// CPU: the KV cache's element type. f16 (as llama.cpp keeps it) halves the memory and the
  /// bytes attention reads; f32 keeps keys and values exact.
  kernels::dtype cpu_kv_type = kernels::dtype::f16;

  /// A simulated device's images take this backend's layout (its sizes are what a switch
  /// copies): the layout of the device its profile was measured on.
  gpu::backend_kind sim_layout = gpu::backend_kind::cuda;

  /// The backend whose layout weights and KV take.
  gpu::backend_kind layout() const noexcept {
    return backend == gpu::backend_kind::sim ? sim_layout : backend;
  }
  kernels::dtype kv_type() const noexcept {
    return layout() == gpu::backend_kind::cpu ? cpu_kv_type : half_type;
  }
  static compute_format for_backend(gpu::backend_kind b) { return {b, kernels::dtype::f16, {}}; }
  /// The CPU's exact reference: f32 weights and KV, no 8-bit activations.
  static compute_format cpu_exact() {
    return {gpu::backend_kind::cpu, kernels::dtype::f16, kernels::dtype::f32, kernels::dtype::f32};
  }
};

/// Where one weight lies in a model image, in the type its backend computes in.
struct weight_slot {
  kernels::dtype type = kernels::dtype::f32;
  std::size_t rows = 0; ///< 1 for vectors
  std::size_t cols = 0;
  std::size_t offset = 0; ///< from the image's start, 256-byte aligned

  std::size_t bytes() const noexcept { return rows * kernels::row_bytes(type, cols); }
  /// The matrix at `base + offset`.
  kernels::matrix at(const void* base) const noexcept {
    return {type, static_cast<const std::byte*>(base) + offset, rows, cols};
  }
  const float* vector_at(const void* base) const noexcept {
    return reinterpret_cast<const float*>(static_cast<const std::byte*>(base) + offset);
  }
};

/// Every tensor of a llama model inside one contiguous image: the embedding, then the layers in
/// order, then the final norm and the output (the same slot as the embedding when tied), so a
/// copy that proceeds front to back makes layers usable one after another.
struct llama_layout {
  struct layer {
    weight_slot attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down;
    /// Present (rows 1) only in the families that have them: q/k/v biases (qwen2), the
    /// per-head q and k norms of head_dim (qwen3).
    weight_slot bq, bk, bv, q_norm, k_norm;
  };
  weight_slot token_embd, output_norm, output;
  weight_slot rope_freqs; ///< present (rows 1, n_rot/2) when the model scales RoPE by factors
  std::vector<layer> layers;
  std::size_t total_bytes = 0;
  /// For a family with RoPE over a head's halves: head_dim and n_rot, by which the image's q
  /// and k rows (and their biases and norms) are reordered into adjacent pairs. 0: as stored.
  std::size_t reorder_head_dim = 0, reorder_rot = 0;

  /// The layout of `config` with each matrix in the type `type_of(gguf_tensor_name)` gives
  /// (e.g. "blk.3.attn_q.weight"); norm vectors are f32.
  static llama_layout plan(const llama_config& config,
                           const std::function<kernels::dtype(const std::string&)>& type_of);

  /// Calls `fn(gguf_tensor_name, slot)` for every tensor in image order (the output once, and
  /// not at all when tied; a family's optional tensors only where it has them).
  void for_each(const std::function<void(const std::string&, const weight_slot&)>& fn) const;
};

/// A model's weights converted for one backend, in host memory the device copies from without
/// staging (pinned), ready to be moved to a device in one piece. Immutable once built; share it.
/// The memory belongs to whoever made it (pinned device memory, a shared-memory file) and lives as
/// long as the image.
class model_image {
public:
  model_image(llama_config config, llama_layout layout, compute_format format,
              std::shared_ptr<const std::byte> bytes);

  const llama_config& config() const noexcept { return config_; }
  const llama_layout& layout() const noexcept { return layout_; }
  const compute_format& format() const noexcept { return format_; }
  /// The image's bytes: copy them to the device as one block.
  std::span<const std::byte> bytes() const noexcept { return {bytes_.get(), layout_.total_bytes}; }

private:
  llama_config config_;
  llama_layout layout_;
  compute_format format_;
  std::shared_ptr<const std::byte> bytes_;
};

/// Called as loading proceeds with bytes done and bytes in all.
using progress_fn = std::function<void(std::size_t done, std::size_t total)>;

/// Where an image's bytes go: `bytes` of host memory the device can copy from asynchronously.
using host_allocator = std::function<result<std::shared_ptr<std::byte>>(std::size_t bytes)>;

/// Pinned host memory of `dev` (it must outlive the images made with it).
host_allocator pinned_allocator(gpu::device& dev);

/// A llama GGUF planned for `format`: its hyperparameters and where each weight will lie.
/// CPU: Q4_0 and Q4_1 matrices become Q4_1x8 and Q8_0 ones Q8_0x8 (the same bits, 8 rows
/// interleaved; Q4_0 as Q4_1 with offset -8·d), Q6_K, Q3_K and Q2_K ones Q6_Kx8, Q3_Kx8 and
/// Q2_Kx8, Q4_K and Q5_K are transcoded to Q4_1(x8) and Q5_1(x8) (kernels::transcode_row), F16
/// and F32 stay, BF16 becomes F32, and other types (Q5_0, IQ4_*, and Q6_K, Q3_K and Q2_K
/// matrices whose rows are not a multiple of 8) are re-quantized to Q8_0 first. CUDA: matrices
/// become f16 or bf16. Errors name the missing or misshapen tensor.
result<std::pair<llama_config, llama_layout>> plan_llama(const gguf::file& f,
                                                         const compute_format& format);

/// Converts `f` into `dst` (layout.total_bytes) as `plan_llama` planned it.
void fill_llama(const gguf::file& f, const llama_layout& layout, std::byte* dst,
                const progress_fn& progress = {});

/// `plan_llama`, then `fill_llama` into memory from `alloc`.
result<std::shared_ptr<const model_image>> load_llama(const gguf::file& f,
                                                      const compute_format& format,
                                                      const host_allocator& alloc,
                                                      const progress_fn& progress = {});

/// `load_llama` into pinned memory of `dev`.
result<std::shared_ptr<const model_image>> load_llama(const gguf::file& f,
                                                      const compute_format& format,
                                                      gpu::device& dev,
                                                      const progress_fn& progress = {});

/// The layout of random weights of `config`'s shape for `format` (CPU: SmolLM2's types, Q4_1
/// matrices and a Q8_0 embedding, interleaved; CUDA: half).
llama_layout plan_synthetic(const llama_config& config, const compute_format& format);

/// Random weights for `plan_synthetic`'s layout, deterministic in `seed`.
void fill_synthetic(const llama_config& config, const llama_layout& layout, std::uint64_t seed,
                    std::byte* dst, const progress_fn& progress = {});

/// Random weights of `config`'s shape for `format`, deterministic in `seed`. For benchmarks
/// and tests of real model sizes.
result<std::shared_ptr<const model_image>>
synthetic_llama(const llama_config& config, const compute_format& format,
                const host_allocator& alloc, std::uint64_t seed, const progress_fn& progress = {});
result<std::shared_ptr<const model_image>> synthetic_llama(const llama_config& config,
                                                           const compute_format& format,
                                                           gpu::device& dev, std::uint64_t seed,
                                                           const progress_fn& progress = {});

} // namespace aeg::models
