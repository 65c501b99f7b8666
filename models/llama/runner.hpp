#pragma once

#include "coro/error.hpp"
#include "gpu/device.hpp"
#include "kernels/context.hpp"
#include "kernels/sampling_row.hpp"
#include "models/llama/weights.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace aeg::models {

/// A model's weights resident on a device: the image's layout at `base` (device memory).
struct device_weights {
  const llama_config* config = nullptr;
  const llama_layout* layout = nullptr;
  const std::byte* base = nullptr;
};

/// One sequence's share of a forward step: `tokens` enter at positions start_pos.., their K and V
/// go to the sequence's KV blocks (`blocks` must cover start_pos + tokens.size() tokens), and when
/// `sample` is set the step picks the token that follows the last one.
struct sequence_step {
  std::span<const std::int32_t> tokens;
  std::size_t start_pos = 0;
  std::span<const std::int32_t> blocks;
  bool sample = false;
  kernels::sampling_row sampling;
};

/// The most one step may hold; sizes the runner's buffers.
struct step_limits {
  std::size_t max_tokens = 512;       ///< tokens of all sequences in one step
  std::size_t max_seqs = 64;          ///< sequences in one step
  std::size_t max_blocks_per_seq = 0; ///< 0: enough for the model's context length
};

/// Runs llama forward steps on one stream: batched prefill and decode, mixed in one step, over a
/// paged KV cache. Owns the step's device buffers and pinned staging, created once and reused for
/// every model of the same or smaller shape (`fits`). Enqueue only; the owner records an event
/// after `enqueue` and reads `sampled()` once it has completed. One step in flight at a time.
class llama_runner {
public:
  /// Buffers for `config`-shaped models on `ctx`'s stream of `dev`.
  static result<std::unique_ptr<llama_runner>> create(gpu::device& dev, kernels::context& ctx,
                                                      const llama_config& config,
                                                      const step_limits& limits);

  /// The device memory `create` takes for these arguments (pinned staging not counted).
  static std::size_t device_bytes(const llama_config& config, const step_limits& limits);

  /// Whether this runner's buffers can serve `config`.
  bool fits(const llama_config& config) const noexcept;
  const step_limits& limits() const noexcept { return limits_; }

  /// Enqueues one step of `steps` with `weights` and the KV cache at `kv_base` (geometry
  /// `weights.config->kv(...)` in the image's KV type). `want_logits` also copies the sampled
  /// rows' logits back (tests). `layer_ready`, when given, holds num_layers + 2 events the step
  /// waits for piece by piece (the embedding, each layer, the final norm and output): a model
  /// still being copied in computes its first layers while later ones arrive.
  /// `errc::invalid_argument` when the step exceeds the limits or a block table is short.
  [[nodiscard]] result<void> enqueue(const device_weights& weights, kernels::dtype kv_type,
                                     std::span<const sequence_step> steps, void* kv_base,
                                     bool want_logits = false,
                                     std::span<gpu::event* const> layer_ready = {});

  /// Tokens picked by the last step, one per sequence with `sample`, in order. Valid once the
  /// work enqueued by `enqueue` has completed.
  std::span<const std::int32_t> sampled() const noexcept;
  /// Logits of those rows ([num_sampled, vocab]) when the step wanted them.
  std::span<const float> logits() const noexcept;

private:
  llama_runner() = default;
  struct buffers;
  std::shared_ptr<buffers> buf_;
  kernels::context* ctx_ = nullptr;
  llama_config shape_;
  step_limits limits_;
  std::size_t num_sampled_ = 0;
  bool have_logits_ = false;
};

} // namespace aeg::models
