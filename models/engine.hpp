#pragma once

#include "coro/error.hpp"
#include "gpu/device.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/sim/sim_profile.hpp"
#include "gpu/weight_arena.hpp"
#include "kernels/context.hpp"
#include "models/llama/runner.hpp"
#include "models/llama/weights.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace aeg::models {

/// Where a sequence's KV cache lives, and the transfer that last wrote it.
struct kv_handle {
  enum class place { none, device, host };
  place where = place::none;
  kernels::kv_geometry geometry;
  std::vector<std::int32_t> blocks;  ///< ids in the pool of `where`
  std::shared_ptr<gpu::event> ready; ///< the last copy into `blocks`; null: nothing pending
  std::size_t tokens = 0;            ///< tokens whose K and V the blocks hold (the owner's count)

  std::size_t block_bytes() const noexcept { return geometry.block_bytes(); }
};

/// How an engine divides its device.
struct engine_options {
  std::size_t weight_bytes = 0; ///< the weight arena: the active model and the next
  std::size_t kv_bytes = 0;     ///< the device KV pool
  std::size_t slab_bytes = std::size_t{64} << 20; ///< KV slab size (device and host pools)
  step_limits limits;                             ///< what one step may hold
};

/// The device memory an engine takes, in its parts.
struct device_plan {
  std::size_t weights = 0; ///< the weight arena
  std::size_t buffers = 0; ///< the step runner's buffers
  std::size_t kv = 0;      ///< the KV pool, or what leaves it room
  std::size_t total() const noexcept { return weights + buffers + kv; }
};

/// Where a simulated step's time went, known once the step starts: the wait for KV still being
/// copied in, and its compute (the profile's cost, as long as it takes with the compute to
/// itself). The rest of the step waited for weights still arriving, for work queued before it,
/// or for other devices' work sharing the compute.
struct step_costs {
  double kv_wait_seconds = 0; ///< from when the step could start until its KV was all in
  double compute_seconds = 0; ///< the profile's cost of the step
};

/// Time an engine spent moving bytes, for reports (all on the stream threads' clocks: they are
/// the copies themselves, not their waiting).
struct engine_stats {
  std::size_t scale_ups = 0;
  std::size_t weight_bytes_copied = 0;
  std::size_t swaps_out = 0, swaps_in = 0;
  std::size_t kv_bytes_out = 0, kv_bytes_in = 0;
};

/// One device's serving machinery, made once and kept across every model switch (component
/// reuse): a compute stream with its kernels context and step runner, a stream for weight copies,
/// one each for KV swap-in and swap-out, the weight arena and the device KV pool. Scaling a model
/// up copies its image from the host cache into the arena, piece by piece with an event each, so
/// the first layers compute while later ones arrive; scaling down releases arena space; KV moves
/// between the device pool and the shared host pool on the swap streams. Every operation enqueues
/// and returns: the owner (an instance actor) awaits the events. Plain C++, one owner.
class engine {
public:
  /// An engine on `dev` for models no larger than `largest` (elementwise), sharing `host_kv`.
  static result<std::unique_ptr<engine>> create(std::shared_ptr<gpu::device> dev,
                                                std::shared_ptr<gpu::kv_pool> host_kv,
                                                const llama_config& largest,
                                                const engine_options& options);
  /// The device capacity `create` takes for `largest` with `options`: the step buffers, the
  /// weight arena and the KV pool, which is `options.kv_bytes` when set and otherwise a share
  /// of what is left, here enough of one to hold `kv_slabs` slabs.
  static device_plan device_bytes(const llama_config& largest, const engine_options& options,
                                  std::size_t kv_slabs = 1);
  /// The KV pool `create` makes when no size is given and `free_bytes` are left after the
  /// weights and buffers: all but a margin for the backend's own allocations.
  static std::size_t kv_bytes_of_free(std::size_t free_bytes) noexcept;
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // --- models -------------------------------------------------------------------------------
  /// Starts copying `image` into the arena beside the active model (a prefetch, or the first
  /// half of a scale-up), after any step already enqueued. Replaces a staged model; `image`
  /// already staged stays as it is.
  /// `errc::out_of_memory` when it does not fit beside the active model (scale that down first).
  [[nodiscard]] result<void> stage(std::shared_ptr<const model_image> image);
  /// A prefetch: stages `image` when it fits beside the active model (true), else only drops
  /// what was staged, as `stage` would (false, and no message is made: an instance asks at
  /// every step while a model is next in line). Errors are the device's.
  [[nodiscard]] result<bool> prefetch(std::shared_ptr<const model_image> image);
  /// The staged model (null when none).
  const model_image* staged() const noexcept { return staged_.image.get(); }
  /// Completes when the staged model is entirely on the device.
  gpu::event& staged_ready() noexcept { return *staged_.pieces.back(); }
  /// Scale-up: the staged model becomes the active one at once (its layers still arriving are
  /// waited for one by one by the steps that need them); the previous active model is scaled
  /// down, its arena space free for the next stage.
  void activate();
  /// Makes `image` the active model: at once when it is the staged one (a prefetch), else once
  /// staged now, after scaling the active model down when there is no room beside it. Returns
  /// whether it was prefetched. `keep_leaving`: the leaving model stays resident as the staged
  /// one (where both fit), so that switching back copies nothing.
  [[nodiscard]] result<bool> scale_up(std::shared_ptr<const model_image> image,
                                      bool keep_leaving = false);
  /// Scale-down without a successor.
  void deactivate() noexcept;
  /// Forgets the staged model (a prefetch no longer wanted); its space is free for the next.
  void unstage() noexcept;
  /// The active model (null when none).
  const model_image* active() const noexcept { return active_.image.get(); }
  /// Completes when the active model is entirely on the device (its scale-up has finished).
  gpu::event& active_ready() noexcept { return *active_.pieces.back(); }
  const std::shared_ptr<const model_image>& active_image() const noexcept { return active_.image; }

  // --- KV -----------------------------------------------------------------------------------
  /// Gives `kv` (new, or on the device) blocks for `tokens` tokens of `geometry`, adding blocks
  /// as needed. `errc::out_of_memory` when the device pool has too few (nothing taken).
  [[nodiscard]] result<void> reserve(kv_handle& kv, const kernels::kv_geometry& geometry,
                                     std::size_t tokens);
  /// Moves `kv` from the device to host blocks on the swap-out stream, after the steps already
  /// enqueued; its device blocks are free once the copy has read them.
  [[nodiscard]] result<void> swap_out(kv_handle& kv);
  /// Moves `kv` from host blocks back to the device on the swap-in stream (after the copy that
  /// wrote them); steps that use it wait for `kv.ready`.
  [[nodiscard]] result<void> swap_in(kv_handle& kv);
  /// Gives `to` (empty) a copy of the K and V of the first `tokens` tokens of `from` (on the
  /// device), on the compute stream after the steps already enqueued, so that sequences with
  /// one prompt read it once. `errc::out_of_memory` when the device pool has too few blocks.
  [[nodiscard]] result<void> fork_kv(const kv_handle& from, kv_handle& to, std::size_t tokens);
  /// Frees `kv`'s blocks wherever they are, once pending transfers are done with them.
  void release(kv_handle& kv);
  /// Returns blocks whose transfers have finished from both pools' move lists.
  void reclaim();
  /// Whether the device pool has `blocks` more blocks of `geometry` free or on their way back
  /// (a reserve may still have to wait for the transfers to finish).
  bool can_reserve(const kernels::kv_geometry& geometry, std::size_t blocks) const;
  /// Snapshots of the device and host KV pools' accounting, after reclaiming finished
  /// transfers (shared, taken again only once a pool changes): what a step is planned on.
  std::shared_ptr<const gpu::kv_ledger> device_ledger() { return device_kv_->snapshot(); }
  std::shared_ptr<const gpu::kv_ledger> host_ledger() { return host_kv_->snapshot(); }
  /// Blocks of `geometry` the whole device pool holds (at most): a context needing more can
  /// never run here.
  std::size_t kv_capacity(const kernels::kv_geometry& geometry) const noexcept {
    return device_kv_->capacity(geometry.block_bytes());
  }
  /// The oldest transfer still holding device KV blocks (null: none): what to await when
  /// nothing can run until room comes back.
  std::shared_ptr<gpu::event> kv_on_its_way() const { return device_kv_->oldest_transfer(); }

  // --- steps --------------------------------------------------------------------------------
  /// Enqueues one forward step of the active model: `steps[i]` uses `kv[i]` (on the device; a
  /// pending swap-in is waited for on the compute stream). Records `step_done()`.
  [[nodiscard]] result<void> enqueue_step(std::span<const sequence_step> steps,
                                          std::span<kv_handle* const> kv, bool want_logits = false);
  /// Completes when the last enqueued step has.
  gpu::event& step_done() noexcept { return *step_done_; }
  /// The tokens the last step picked (once `step_done()` has completed). On a simulated device
  /// every pick is the vocabulary's middle token (no stop token of the families served), so a
  /// request runs to its `max_tokens`, as its trace says.
  std::span<const std::int32_t> sampled() const noexcept {
    return sim_ ? std::span<const std::int32_t>(sim_sampled_) : runner_->sampled();
  }
  std::span<const float> logits() const noexcept { return runner_->logits(); }
  /// The split of the last enqueued step on a simulated device, once it has started; none on a
  /// real one, whose timeline is not known.
  std::optional<step_costs> last_step_costs() const noexcept {
    return sim_costs_ ? std::optional(*sim_costs_) : std::nullopt;
  }
  /// Whether steps can copy their logits back (a simulated device computes none).
  bool computes_logits() const noexcept { return !sim_; }

  // --- state --------------------------------------------------------------------------------
  gpu::device& device() const noexcept { return *dev_; }
  const gpu::kv_pool& device_kv() const noexcept { return *device_kv_; }
  const gpu::kv_pool& host_kv() const noexcept { return *host_kv_; }
  const gpu::weight_arena& arena() const noexcept { return *arena_; }
  const engine_stats& stats() const noexcept { return stats_; }
  const step_limits& limits() const noexcept { return runner_->limits(); }
  /// Whether this engine's buffers can run `config`.
  bool fits(const llama_config& config) const noexcept { return runner_->fits(config); }

private:
  engine() = default;

  // A model in the arena: its image, where its bytes are, and an event per piece (embedding,
  // each layer, tail) recorded on the copy stream after that piece's copy.
  struct resident {
    std::shared_ptr<const model_image> image;
    std::byte* base = nullptr;
    std::vector<std::unique_ptr<gpu::event>> pieces;
    bool copied = false;        // every piece known complete: steps stop waiting
    gpu::sim_model_fit sim_fit; // a simulated device's step times for this model
  };

  // A simulated device's step: its cost on the compute stream, no arithmetic; `costs` gets it.
  result<void> enqueue_sim_step(std::span<const sequence_step> steps,
                                std::span<gpu::event* const> pieces, step_costs& costs);

  std::shared_ptr<gpu::device> dev_;
  std::shared_ptr<gpu::kv_pool> host_kv_;
  std::unique_ptr<gpu::stream> compute_, copy_, swap_in_, swap_out_;
  std::unique_ptr<kernels::context> ctx_;
  std::unique_ptr<llama_runner> runner_;
  std::unique_ptr<gpu::weight_arena> arena_;
  std::unique_ptr<gpu::kv_pool> device_kv_;
  std::shared_ptr<gpu::event> step_done_; // shared: freed blocks wait on it
  resident active_, staged_;
  std::vector<std::unique_ptr<gpu::event>> spare_pieces_; // events of a scaled-down model, reused
  bool sim_ = false;                                      // the device is simulated
  std::vector<std::int32_t> sim_sampled_;
  std::shared_ptr<step_costs> sim_costs_; // the last simulated step's, filled in as it starts
  engine_stats stats_;
};

/// The elementwise largest shape of `configs` (what an engine serving all of them needs).
llama_config largest_shape(std::span<const llama_config> configs);

} // namespace aeg::models
