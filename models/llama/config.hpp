#pragma once

#include "coro/error.hpp"
#include "kernels/kv_geometry.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace aeg::models {

namespace gguf {
class file;
}

/// The llama-shaped families, each a small variation of one forward pass.
enum class model_family {
  llama, ///< Llama 1/2/3, Mistral, Yi, SmolLM: q/k stored for adjacent-pair RoPE
  qwen2, ///< Qwen2 / Qwen2.5: q/k/v biases, RoPE over the two halves of a head (NEOX)
  qwen3, ///< Qwen3: RMSNorm of each q and k head before RoPE (NEOX), no biases
};

/// The family's `general.architecture` name.
std::string_view to_string(model_family f) noexcept;

/// Hyperparameters of a llama-architecture model (GQA, RoPE, SwiGLU, RMSNorm).
struct llama_config {
  std::string name;
  model_family family = model_family::llama;
  std::size_t num_layers = 0;
  std::size_t dim = 0;     ///< embedding width
  std::size_t ffn_dim = 0; ///< SwiGLU hidden width
  std::size_t num_heads = 0;
  std::size_t num_kv_heads = 0;
  std::size_t head_dim = 0;
  std::size_t n_rot = 0; ///< rotated dims per head (usually head_dim)
  std::size_t vocab_size = 0;
  std::size_t context_length = 0;
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
  bool tied_output = false; ///< logits use the embedding table (no output.weight)
  /// RoPE frequencies are divided by per-pair factors (tensor rope_freqs.weight, n_rot/2 of
  /// them): Llama 3.1+'s long-context scaling as GGUF stores it.
  bool rope_freq_factors = false;
  /// Attention sees only the last this many keys (Mistral 7B v0.1's 4096; 0: all). Served
  /// exactly by capping the context length at the window, so no key ever falls outside it.
  std::size_t sliding_window = 0;

  /// q, k and v have bias vectors (qwen2).
  bool attention_bias() const noexcept { return family == model_family::qwen2; }
  /// Each q and k head is RMS-normalized (weights of head_dim) before RoPE (qwen3).
  bool qk_norm() const noexcept { return family == model_family::qwen3; }
  /// A llama whose q and k rows are stored with each head's RoPE pairs as its two halves (as
  /// Hugging Face keeps them; a GGUF of llama.cpp's converter permutes them into adjacent rows).
  bool llama_rows_in_halves = false;
  /// The metadata key (a bool) by which a model read from a Hugging Face folder says so.
  static constexpr std::string_view halves_key = "aegaeon.llama.rope_rows_in_halves";

  /// q and k rows hold each head's RoPE pairs as its halves (i, i + n_rot/2): qwen2 and qwen3
  /// always, a llama when `llama_rows_in_halves`. The image loader reorders such rows into
  /// adjacent pairs, so that the one adjacent-pair kernel serves every family.
  bool rope_halves() const noexcept {
    return family != model_family::llama || llama_rows_in_halves;
  }

  /// Reads and validates the hyperparameters of a GGUF whose general.architecture is "llama",
  /// "qwen2" or "qwen3"; another is refused, named.
  static result<llama_config> from_gguf(const gguf::file& f);

  /// A real model's shape for synthetic weights: "smollm2-135m", "llama-3.2-1b", "llama-2-7b",
  /// "llama-2-13b", "llama-3-8b", "yi-9b", "qwen2.5-7b", "qwen2.5-72b". `errc::not_found` lists
  /// the known names.
  static result<llama_config> synthetic(std::string_view shape);
  /// Names `synthetic` knows.
  static std::vector<std::string> synthetic_shapes();

  /// The KV cache geometry of this model with elements of type `kv_type`.
  kernels::kv_geometry kv(kernels::dtype kv_type) const noexcept {
    return {num_layers, num_kv_heads, head_dim, kv_type};
  }

  /// Weights in the model (embedding and output counted once when tied).
  std::size_t num_parameters() const noexcept;

  /// Checks the shape is one the kernels can run; errors name the bad field.
  result<void> validate() const;
};

} // namespace aeg::models
