#pragma once

#include "actors/sched/estimators.hpp"
#include "actors/sched/switch_policy.hpp"
#include "gpu/kv_ledger_copy.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

// What an instance knows at a step boundary (a read-only view) and what it does next (a plan):
// plain C++ with no CAF and no device, so that step planning is tested by tables. The instance
// actor builds the view from its state, asks its switch policy, plans, and applies the plan.

namespace aeg::actors {

using plan_clock = std::chrono::steady_clock;

/// Where a sequence's KV cache is.
enum class kv_place { none, device, host };

/// The state of the last copy into a sequence's KV blocks.
enum class kv_copy {
  done,     ///< nothing pending
  arriving, ///< a swap-in (or a copy its blocks came from) is still running
  failed,   ///< the copy failed (a faulted device): the KV is lost and must be recomputed
};

/// A sequence as the planner sees it.
struct seq_view {
  std::uint64_t id = 0;
  std::size_t model = 0;
  std::size_t tokens = 0;    ///< prompt and generated tokens
  std::size_t kv_tokens = 0; ///< leading tokens whose K and V are stored
  kv_place where = kv_place::none;
  std::vector<std::int32_t> blocks; ///< block ids in the pool of `where`
  kv_copy copy = kv_copy::done;
  std::uint64_t batch = 0;     ///< which of its model's batches it decodes in (when running)
  std::uint64_t last_step = 0; ///< the step it last ran in (least recently used swaps out first)
  plan_clock::time_point arrived{};
  /// Tokens it may still generate (its max_tokens less those made): what a shortest-job policy
  /// reads as the oracle length (a simulated trace's requests make exactly max_tokens).
  std::size_t remaining = 0;

  /// Tokens still to run through the model: a prompt (chunk) or the last token made.
  std::size_t pending() const noexcept { return tokens - kv_tokens; }
};

/// Which batch of a model its turns serve. A model's running sequences form one batch until
/// their KV outgrows the device; then the overflow becomes a batch of its own, with its own turns.
struct batch_turns {
  static constexpr std::uint64_t no_batch = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t current = 0;         ///< the batch this model's turns serve now
  std::uint64_t last_id = 0;         ///< the last batch id given out
  std::uint64_t overflow = no_batch; ///< where this turn's overflow goes (none yet)
  bool operator==(const batch_turns&) const = default;
};

/// The sequences of a view by id. Hashed: the planner only looks them up, and the instance
/// updates the entries in place at every step (their block lists keep their room).
using seq_views = std::unordered_map<std::uint64_t, seq_view>;

/// A served model as the planner sees it.
struct model_view {
  /// The served model's name (the instance's, which outlives the plan: a name is not worth
  /// copying into every view).
  std::string_view name;
  std::size_t block_bytes = 0; ///< one KV block of its geometry
  std::size_t image_bytes = 0; ///< its weights (what a switch copies)
  double tbt_seconds = 0.1;
  // Vectors, not deques: a view holds every served model, and an empty deque allocates.
  std::vector<std::uint64_t> running; ///< holding KV (device or host), in admission order
  std::vector<std::uint64_t> waiting; ///< not yet holding KV, in arrival order
  batch_turns turns;
  /// Its last step found nothing it could run: the policy passes it over until a step of some
  /// model runs (which may free room).
  bool blocked = false;
  std::uint64_t work_since = 0; ///< order in which models got work (the policy's order)
  const sched::decode_estimator* decode_time = nullptr; ///< null: the estimator's prior

  bool has_work() const noexcept { return !running.empty() || !waiting.empty(); }
};

/// What one step may hold and how prompts share it.
struct step_limits_view {
  std::size_t max_batch_tokens = 512;
  std::size_t max_seqs = 64;
  /// A prefill instance: one sequence per step (the paper's prefill batch of one).
  bool one_sequence_per_step = false;
  /// Swap the leaving model's device KV out to the host at every switch.
  bool swap_out_on_switch = false;
  /// Prompt tokens a step may run beside decoding sequences (learned from their deadlines).
  std::size_t prompt_tokens_beside_decodes = 512;
};

/// Everything the planner reads: the instance at a step boundary. Nothing runs while it plans.
struct step_view {
  static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
  step_limits_view limits;
  std::vector<model_view> models;
  seq_views seqs;
  std::size_t active = none;  ///< the model the last step ran
  std::size_t staged = none;  ///< the model copied (or being copied) in beside it
  gpu::kv_ledger_copy device; ///< the device KV pool's accounting (copied when the plan edits it)
  gpu::kv_ledger_copy host;   ///< the host KV pool's accounting
  const sched::switch_estimator* switch_time = nullptr; ///< null: the estimator's prior
  std::size_t turn_steps = 0; ///< steps the active model has run in its turn
  sched::seconds turn_elapsed{0};
  plan_clock::time_point now{};
};

// --- the plan: actions, applied in order -----------------------------------------------------

/// Makes `model` the active one (scale the leaving one down, this one up); `prefetched` when it
/// was already staged.
struct activate_model {
  std::size_t model;
  bool prefetched;
  bool operator==(const activate_model&) const = default;
};
/// Starts copying `model` in beside the active one, for a later switch.
struct prefetch_model {
  std::size_t model;
  bool operator==(const prefetch_model&) const = default;
};
/// Moves the sequence's KV from the device to the host.
struct swap_out_kv {
  std::uint64_t seq;
  bool operator==(const swap_out_kv&) const = default;
};
/// Moves the sequence's KV from the host to the device.
struct swap_in_kv {
  std::uint64_t seq;
  bool operator==(const swap_in_kv&) const = default;
};
/// The sequence gives its KV back and goes to the front of its model's queue: it is recomputed
/// from its tokens later.
struct preempt_seq {
  std::uint64_t seq;
  bool operator==(const preempt_seq&) const = default;
};
/// The sequence (its KV on the host now) decodes in `batch`, an overflow batch with turns of
/// its own.
struct split_seq {
  std::uint64_t seq;
  std::uint64_t batch;
  bool operator==(const split_seq&) const = default;
};
/// A waiting sequence starts running in `batch`.
struct admit_seq {
  std::uint64_t seq;
  std::uint64_t batch;
  bool operator==(const admit_seq&) const = default;
};
/// Gives the sequence device KV blocks for `tokens` tokens (adding to what it has).
struct reserve_kv {
  std::uint64_t seq;
  std::size_t tokens;
  bool operator==(const reserve_kv&) const = default;
};
/// Ends the sequence with an error: it can never run here.
struct fail_seq {
  std::uint64_t seq;
  std::string message;
  bool operator==(const fail_seq&) const = default;
};

using plan_action = std::variant<activate_model, prefetch_model, swap_out_kv, swap_in_kv,
                                 preempt_seq, split_seq, admit_seq, reserve_kv, fail_seq>;

/// One sequence in the step: `feed` of its pending tokens run through the model.
struct step_entry {
  std::uint64_t seq;
  std::size_t feed;
  bool operator==(const step_entry&) const = default;
};

/// What to do when no sequence can step.
enum class idle_kind {
  none,       ///< the step has sequences
  await_room, ///< KV room is on its way back from a transfer: await it on the device
  yield,      ///< let messages in, then plan again (the model is blocked, or gave way)
};

/// What an instance does next: the actions in order, then the step.
struct step_plan {
  std::vector<plan_action> actions;
  std::vector<step_entry> step;
  idle_kind idle = idle_kind::none;
  bool restart_turn = false; ///< a new turn begins: its clock starts again
  /// Every model's batch turns and blocked flag after the plan (`plan_step`; a plan made in
  /// place leaves them in its view).
  std::vector<batch_turns> turns;
  std::vector<bool> blocked;
};

/// "activate m1 (prefetched)", "swap out #3", "reserve #4 to 33 tokens", ... (model names from
/// `v`), for logs and step tables.
std::string describe(const plan_action& a, const step_view& v);
/// Every action, then "step #3+1 #4+16" or "idle: await room" / "idle: yield".
std::vector<std::string> describe(const step_plan& p, const step_view& v);

} // namespace aeg::actors
