#pragma once

#include "kernels/dtype.hpp"
#include "kernels/host_device.hpp"

#include <cstddef>

namespace aeg::kernels {

/// Shape of one model's paged KV cache. A block holds `block_tokens` tokens of every layer, K
/// and V, contiguous: [layer][k, v][token][kv_head][head_dim], so moving a request's KV between
/// memories is one copy per block. Models with the same geometry can share blocks.
struct kv_geometry {
  static constexpr std::size_t block_tokens = 16;

  std::size_t num_layers = 0;
  std::size_t kv_heads = 0;
  std::size_t head_dim = 0;
  dtype type = dtype::f32; ///< f32 or f16 on the CPU, f16 or bf16 on CUDA

  /// Bytes of one element (4 for f32, 2 for f16 and bf16).
  AEG_HOST_DEVICE std::size_t element_bytes() const noexcept { return type == dtype::f32 ? 4 : 2; }
  /// Bytes of one token's K (or V) in one layer.
  AEG_HOST_DEVICE std::size_t token_bytes() const noexcept {
    return kv_heads * head_dim * element_bytes();
  }
  /// Bytes of one block.
  AEG_HOST_DEVICE std::size_t block_bytes() const noexcept {
    return num_layers * 2 * block_tokens * token_bytes();
  }
  /// Byte offset, inside a block, of slot `slot` (0..15) of K (`v` false) or V of `layer`.
  AEG_HOST_DEVICE std::size_t offset(std::size_t layer, bool v, std::size_t slot) const noexcept {
    return ((layer * 2 + (v ? 1 : 0)) * block_tokens + slot) * token_bytes();
  }
  /// Blocks that hold `tokens` tokens.
  AEG_HOST_DEVICE static std::size_t blocks_for(std::size_t tokens) noexcept {
    return (tokens + block_tokens - 1) / block_tokens;
  }

  bool operator==(const kv_geometry&) const = default;
};

/// What a caller knows on the host of an attention step over the paged cache: the most keys a
/// row reads and how many sequences the rows belong to (0: not known; then the table's width
/// bounds the keys, and a GPU fills its tiles with as many rows as they hold).
struct attention_hint {
  std::size_t longest = 0;
  std::size_t sequences = 0;
};

} // namespace aeg::kernels
