#pragma once

#include "gpu/device.hpp"
#include "models/llama/weights.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>

#include <cstddef>
#include <memory>

namespace aeg::actors {

/// How an instance sizes its work.
struct instance_options {
  std::size_t max_batch_tokens = 512; ///< tokens in one step (prompt chunks and decodes)
  std::size_t max_seqs = 64;          ///< sequences in one step
  std::size_t kv_bytes = 0;           ///< KV cache size; 0: the device memory left over
};

/// What an instance reports on `(stats_atom)`.
struct instance_stats {
  std::size_t kv_blocks = 0;      ///< blocks in the KV pool
  std::size_t kv_blocks_free = 0; ///< of which free
  std::size_t running = 0;        ///< sequences holding KV
  std::size_t waiting = 0;        ///< admitted, not yet holding KV
  std::size_t steps = 0;          ///< forward steps run
  std::size_t tokens_generated = 0;
  std::size_t preemptions = 0; ///< sequences evicted for KV and recomputed later
  bool ready = false;          ///< weights resident, serving
};

/// Spawns an instance: an actor that owns `dev` and serves the model in `image` with continuous
/// batching. It copies the weights to the device, then takes `(generate_atom,
/// generation_request)` messages; requests join the running batch at step boundaries, stream
/// their tokens to their sinks, and leave when done; `(cancel_atom, id)` ends one and frees its
/// KV at the next step boundary (at once when no step is running). It never blocks a thread:
/// its step loop is a coroutine that awaits device events through its mailbox. If it cannot
/// start (no memory for the weights), every request it holds ends with finish_reason::error and
/// it exits with that error.
caf::actor spawn_instance(caf::actor_system& sys, std::shared_ptr<gpu::device> dev,
                          std::shared_ptr<const models::model_image> image,
                          instance_options options = {});

} // namespace aeg::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(aeg::actors::instance_stats)
