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

/// Hyperparameters of a llama-architecture model (GQA, RoPE, SwiGLU, RMSNorm).
struct llama_config {
  std::string name;
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

  /// Reads and validates the hyperparameters of a GGUF with general.architecture "llama".
  static result<llama_config> from_gguf(const gguf::file& f);

  /// A real model's shape for synthetic weights: "llama-3.2-1b", "llama-2-7b", "llama-2-13b",
  /// "smollm2-135m". `errc::not_found` lists the known names.
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
