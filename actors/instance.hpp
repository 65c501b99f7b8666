#pragma once

#include "actors/generation.hpp"
#include "actors/roles.hpp"
#include "actors/sched/switch_policy.hpp"
#include "gpu/device.hpp"
#include "gpu/kv_pool.hpp"
#include "models/engine.hpp"
#include "models/llama/weights.hpp"
#include "models/model_cache.hpp"
#include "models/sizing.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace aeg::actors {

/// How an instance sizes and schedules its work.
struct instance_options {
  instance_role role = instance_role::colocated;
  std::size_t max_batch_tokens = 512; ///< tokens in one step (prompt chunks and decodes)
  std::size_t max_seqs = 64;          ///< sequences in one step
  std::size_t kv_bytes = 0;           ///< device KV pool; 0: the device memory left over
  std::size_t host_kv_bytes = 0;      ///< its own host KV pool when none is shared; 0: as kv_bytes
  std::size_t slab_bytes = std::size_t{16} << 20; ///< KV slab size
  /// Weight memory: 0 for room to prefetch (the two largest models side by side) when the device
  /// has it, else for the largest alone.
  std::size_t weight_bytes = 0;
  /// The engine's sizes, already planned (a pool plans every instance's once, from the share of
  /// its device each gets); unset: planned at start from what the device has free.
  std::optional<models::engine_options> engine;
  /// Swap the KV of a model that leaves the device out to the host at every switch (else only
  /// when the device pool needs the room).
  bool swap_out_on_switch = false;
  /// Keep a model that leaves the device resident beside the next one (where both fit), so that
  /// switching back copies nothing: MuxServe's two resident models. Else its space is freed.
  bool keep_resident = false;
  /// A prefill instance's node's hand-off desk (handoff_desk.hpp): a request whose request actor
  /// is on another node is handed off there, so that its KV stays on this node. Null: none.
  caf::actor handoff_desk;
  /// Makes the policy that picks the model of each step; round-robin turns of 16 steps if unset.
  std::function<std::unique_ptr<sched::switch_policy>()> policy;
};

/// One model an instance serves, and what its requests are promised.
struct served_model {
  std::string name;
  std::shared_ptr<const models::model_image> image;
  double tbt_seconds = 0.1; ///< time between tokens (the decode policy's target)
  double ttft_seconds = 10; ///< time to first token: with the TBT, when each token is due
};

/// One change of an instance's active model.
struct switch_record {
  double seconds_ago = 0;       ///< when it began, counted back from when the stats were taken
  std::string from, to;         ///< the models (`from` empty: the instance's first model)
  double scale_up_seconds = -1; ///< until its weights were all in (-1: still coming in)
  bool prefetched = false;      ///< the weights were already copied in beside the last model
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, switch_record& x) {
  return f(caf::meta::type_name("switch_record"), x.seconds_ago, x.from, x.to, x.scale_up_seconds,
           x.prefetched);
}

/// How many of its latest switches an instance keeps for its stats: about a minute of switching
/// at a few switches a second per device (a dashboard's strip), without making each stats answer
/// large.
inline constexpr std::size_t recent_switches_kept = 1024;

/// What an instance reports on `(stats_atom)`.
struct instance_stats {
  std::size_t kv_bytes_used = 0; ///< device KV bytes in allocated blocks
  std::size_t host_kv_bytes_used = 0;
  double kv_fragmentation = 0; ///< unused share of the device KV slabs in use
  std::size_t running = 0;     ///< sequences holding KV
  std::size_t waiting = 0;     ///< admitted, not yet holding KV
  std::size_t steps = 0;       ///< forward steps run
  /// Of those, decode steps run again without a view or a plan while the policy's decision
  /// stood (with `instance_state::check_views` on: the steps that would have been)
  std::size_t steps_repeated = 0;
  /// Summed time of the steps, each from its enqueueing to its end reaching the instance: what
  /// a step costs in this pool, the host's reaction included (`aegaeon profile` times a step
  /// alone, back to back)
  double step_seconds = 0;
  /// Of the steps, those that only decoded (one token for each sequence), their summed time
  /// and sequences: a decode step's mean cost at the pool's mean batch
  std::size_t decode_steps = 0, decode_sequences = 0;
  double decode_step_seconds = 0;
  std::size_t tokens_generated = 0;
  std::size_t preemptions = 0;    ///< sequences evicted and recomputed later
  std::size_t batch_splits = 0;   ///< sequences moved to an overflow batch (KV kept on the host)
  std::size_t prompts_shared = 0; ///< requests that copied their group leader's prompt KV
  std::size_t switches = 0;       ///< times the active model changed
  std::size_t prefetches = 0;     ///< switches to a model already copied in
  std::size_t swaps_out = 0, swaps_in = 0;
  std::size_t weight_bytes_copied = 0, kv_bytes_swapped = 0;
  double scale_up_seconds = 0; ///< summed time from a switch to its model being all in
  std::string active;          ///< the active model
  std::string staged;          ///< the model being prefetched or prefetched beside it (or none)
  bool ready = false;          ///< serving
  std::vector<switch_record> recent_switches; ///< the last recent_switches_kept, oldest first
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, instance_stats& x) {
  return f(caf::meta::type_name("instance_stats"), x.kv_bytes_used, x.host_kv_bytes_used,
           x.kv_fragmentation, x.running, x.waiting, x.steps, x.tokens_generated, x.preemptions,
           x.batch_splits, x.prompts_shared, x.switches, x.prefetches, x.swaps_out, x.swaps_in,
           x.weight_bytes_copied, x.kv_bytes_swapped, x.scale_up_seconds, x.active, x.staged,
           x.ready, x.recent_switches, x.steps_repeated, x.step_seconds, x.decode_steps,
           x.decode_sequences, x.decode_step_seconds);
}

/// What an instance with `options` serving `models` asks of its device (see models/sizing.hpp).
models::instance_sizing sizing_of(std::vector<models::model_footprint> models,
                                  const instance_options& options);

/// An instance's messages: `(generate_atom, generation_request)` starts a request (its tokens and
/// end go to its sink), `(decode_atom, decode_job)` continues one prefilled elsewhere,
/// `(cancel_atom, id)` ends one and frees its KV, `(stats_atom)` answers `instance_stats`.
using instance_actor = caf::typed_actor<
    caf::reacts_to<generate_atom, generation_request>, caf::reacts_to<decode_atom, decode_job>,
    caf::reacts_to<cancel_atom, std::uint64_t>, caf::replies_to<stats_atom>::with<instance_stats>>;

/// Spawns an instance: an actor that owns `dev` and serves `models` (one active at a time) with
/// continuous batching and token-level switching. Requests name a model (or none when there is
/// one); they join the active model's batch at step boundaries, stream their tokens to their
/// sinks and leave when done. At each boundary the policy picks the next step's model: a switch
/// scales the leaving model down and the next one up (already there when it was prefetched;
/// else its first layers compute while the rest is copied in), swapping KV out to the host and
/// back in as room requires. A cancel ends a request and frees its KV at the next boundary. The
/// step loop is a coroutine that awaits device events through the mailbox: no thread ever
/// blocks. `host_kv` is the node's shared host KV pool (null: the instance makes its own). If it
/// cannot start (no memory), every request it holds ends with finish_reason::error and it exits
/// with that error.
instance_actor spawn_instance(caf::actor_system& sys, std::shared_ptr<gpu::device> dev,
                              std::vector<served_model> models, instance_options options = {},
                              std::shared_ptr<gpu::kv_pool> host_kv = nullptr);

/// One model, named after its config.
instance_actor spawn_instance(caf::actor_system& sys, std::shared_ptr<gpu::device> dev,
                              std::shared_ptr<const models::model_image> image,
                              instance_options options = {});

} // namespace aeg::actors
