#pragma once

#include "coro/error.hpp"
#include "models/engine.hpp"
#include "models/model_cache.hpp"

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// Device-memory sizing, in one place, from the description that allocates: an engine takes its
// step buffers (`llama_runner::device_bytes`), its weight arena and its KV pool (`engine::
// device_bytes`); this module decides how big each is for an instance and what a device must
// hold. Instances, pools, the server and the CLI all size through it.

namespace aeg::models {

/// What an instance asks of a device: the models it serves (one active and, when there is room,
/// the next beside it) and the sizes it was given.
struct instance_sizing {
  std::vector<model_footprint> models;
  step_limits limits;           ///< what one step holds
  std::size_t kv_bytes = 0;     ///< the device KV pool; 0: what the budget leaves
  std::size_t weight_bytes = 0; ///< the weight arena; 0: room to prefetch when the budget has it
  std::size_t slab_bytes = std::size_t{16} << 20; ///< KV slabs (at least 4 blocks each)
};

/// How an engine for `s` divides `budget_bytes` of device memory (what its device has free, or
/// the share of a device it is given): every size resolved, the KV pool's included. The weight
/// arena holds the two largest models side by side when they take less than half the budget and
/// the KV still fits beside them (so more memory never takes that choice back), else the largest.
/// Slabs hold at least four of the largest KV blocks.
engine_options plan_engine(const instance_sizing& s, std::size_t budget_bytes);

/// The device memory `s` needs at least: its engine on a device of just that size with KV for
/// one context of `tokens` tokens of its largest KV shape (at least one slab); the arena as it
/// would be on a device of that size.
device_plan device_bytes_needed(const instance_sizing& s, std::size_t tokens);

/// The slab size of KV pools that hold blocks of `models` (a device's, or a node's host pool that
/// carries them from prefill to decode): `configured`, raised to hold at least four of the
/// largest block, since a slab serves whole blocks of one size.
std::size_t slab_bytes_for(std::span<const model_footprint> models, std::size_t configured);

/// The elementwise largest shape `s` serves (what its step buffers are sized for).
llama_config largest_shape_of(const instance_sizing& s);

/// The one wording of "does not fit": "`what` has 64 MiB; it needs 150 MiB (weights 92, step
/// buffers 30, KV 28); `fix`". `what` names the memory ("device 'gpu0'", "--memory-mib 64"),
/// `fix` what to change in the caller's terms.
error does_not_fit(std::string_view what, std::size_t have_bytes, const device_plan& need,
                   std::string_view fix);

/// `bytes` in MiB, rounded up: what to ask for.
std::size_t mib_ceil(std::size_t bytes) noexcept;

} // namespace aeg::models
