#pragma once

// The parts of an instance actor that need no actor: making its engine, reading the engine's
// counters into its stats, and the log of its model switches.

#include "actors/instance.hpp"
#include "actors/instance_state.hpp"
#include "models/engine.hpp"

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace aeg::actors {

/// The engine of an instance serving `models` with `options` on `dev`; makes the instance's own
/// host KV pool when `host_kv` is null. Throws `error_exception` with the reason.
std::unique_ptr<models::engine> make_instance_engine(const std::shared_ptr<gpu::device>& dev,
                                                     std::shared_ptr<gpu::kv_pool>& host_kv,
                                                     const std::vector<served_model>& models,
                                                     const instance_options& options);

/// Which of `state`'s models `engine` holds staged (prefetched) weights of; step_view::none if
/// none.
std::size_t staged_model(const instance_state& state, const models::engine& engine);

/// Tells `r`'s sink that it ended with an error, `why`, after `generated` tokens.
void refuse(const generation_request& r, std::size_t generated, std::string why);
/// Tells `seq`'s sink that it ended for `reason`, after the tokens it has not sent yet (as of
/// `now`).
void notify_done(sequence& seq, finish_reason reason, const std::string& message,
                 std::chrono::steady_clock::time_point now);

/// Gives `seq`'s sink its new `token`, made at `now`, as its request asks: at once, in the next
/// batch (sent once it holds most_tokens_per_batch, and at the latest before the end or a
/// hand-off), or not at all.
void deliver_token(sequence& seq, std::int32_t token, models::token_logprobs lp,
                   std::chrono::steady_clock::time_point now);
/// Sends the tokens `seq` holds for its sink's next batch, if any, with their ages at `now`.
void send_unsent(sequence& seq, std::chrono::steady_clock::time_point now);

/// Charges `seq` with a step it was in that took `took` seconds (split by `costs` when the
/// device knows them, else all compute): to its prompt until its first token, then to decoding.
void charge_step(sequence& seq, double took, const std::optional<models::step_costs>& costs);

/// Whether `v` has models with work that are blocked (passed over by the policy's view).
bool blocked_with_work(const step_view& v);

/// The step on the device: its entries, and what the engine and the step's end need of them, in
/// buffers that keep their room from one step to the next.
struct step_in_flight {
  std::vector<step_entry> step;
  std::vector<models::sequence_step> steps;
  std::vector<models::kv_handle*> kvs;
  std::vector<sequence*> chosen;
  std::chrono::steady_clock::time_point started;

  /// Takes the requests of `step` from `state`, marking them in the step; true when one asks
  /// for log-probabilities (and the engine keeps `logits`).
  bool take(instance_state& state, bool logits);
};

/// Engine operations that move KV fail for lack of room only in a race on the shared host pool:
/// false then; anything else is a device failure, thrown (it ends the instance).
bool room_or_throw(result<void> r);

/// Sends `job`, handed off by instance `from`, to its request's hand-off sink: through `desk`
/// (this node's, may be null) when the sink is on another node, so that the job's KV stays on
/// this node. A job with no sink is dropped, and its KV goes back to the pool.
void send_handoff(decode_job job, const caf::actor& desk, const caf::actor_addr& from);

/// What a prefill instance hands on for `seq` (its KV on the host, moved out of `seq`), with the
/// instance's measured scale-up rate (0: none yet).
decode_job decode_job_of(sequence& seq, std::shared_ptr<gpu::kv_pool> host_kv,
                         double switch_bytes_per_second);

/// Copies the engine's KV and transfer counters into `s` (after reclaiming finished transfers).
void add_engine_stats(instance_stats& s, models::engine& engine);
/// Counts a step of `seconds` in `counts`: its time, and a decode-only step's sequences (each
/// of `chosen`, before the step, read one token after tokens it had).
void count_step(instance_stats& counts, const std::vector<step_entry>& step,
                const std::vector<sequence*>& chosen, double seconds);

/// The log-probabilities of `token`, picked by `rule` in row `row` of the engine's last step,
/// with `top` alternatives; empty when `top` < 0 (not asked) or the step kept no logits.
models::token_logprobs token_logprobs_in(const models::engine& engine, std::int32_t top,
                                         const kernels::sampling_row& rule, std::int32_t token,
                                         std::size_t row, std::size_t vocab);

/// Requests of one prompt group (the choices of one completion) that reach an instance
/// together: the first is the group's leader and reads the prompt; the others wait here, out
/// of the instance's state, until it has, then copy its KV instead of reading the prompt again.
class prompt_groups {
public:
  /// Keeps `seq` as a follower when its group has a leader here with the same model and
  /// prompt (true); else makes it its group's leader (if it has a group) and leaves it.
  bool join(std::unique_ptr<sequence>& seq, const instance_state& state);
  /// The followers of `leader`'s group, which it no longer leads (none if it led none).
  std::vector<std::unique_ptr<sequence>> release(const sequence& leader);
  /// Takes the follower with request id `id` (null: none).
  std::unique_ptr<sequence> take(std::uint64_t id);
  /// Takes every follower.
  std::vector<std::unique_ptr<sequence>> take_all();
  /// The ids of the followers whose sink is `sink`.
  std::vector<std::uint64_t> ids_of_sink(const caf::actor_addr& sink) const;
  std::size_t followers() const noexcept { return followers_.size(); }

private:
  std::map<std::uint64_t, std::uint64_t> leaders_; // group → its leader's request id
  std::multimap<std::uint64_t, std::unique_ptr<sequence>> followers_; // by group
};

/// A switch policy's last decision while it stands (`turn_decision::holds_below`), and the last
/// step while it repeats: with both, an instance runs the step again without asking the policy
/// or making a view and a plan, which would give the same.
class standing_turn {
public:
  /// The decision stands: the work is as it saw it (`work`: instance_state::work_version), its
  /// model is `active`, and the turn has run for less than it holds.
  bool holds(std::uint64_t work, std::size_t active, sched::seconds turn_elapsed) const;
  /// The decision, as asked again within its turn (no new turn).
  const sched::turn_decision& decision() const { return held_->decision; }
  /// The last plan was a decode step with no actions that `state` would plan again for `active`
  /// (instance_state::step_repeats).
  bool repeats(const instance_state& state, std::size_t active) const;
  const std::vector<step_entry>& last_step() const noexcept { return last_step_; }
  /// After a plan made from `fresh` (null: from the decision that stands) when the work was at
  /// `work`, and applied (its model, `active`, is the active one now): keeps its step if it may
  /// repeat, and `fresh` while it stands. A plan's only action may be a prefetch the engine refused
  /// (`refused`, a model index): the engine refuses it again while the active model stays, so a
  /// repeat need not ask. `hidden`: the view had blocked models with work, which the policy did not
  /// see and a step unblocks; then no decision is kept.
  void planned(const step_plan& plan, const sched::turn_decision* fresh, bool hidden,
               std::uint64_t work, std::size_t active, std::size_t refused);
  /// Keeps nothing (a plan was applied only in part).
  void drop() noexcept;
  /// For tests: throws `errc::internal` unless `fresh` (the policy asked while the decision
  /// stood) and `plan` (planned afresh where the step was to be `repeated`) agree with them.
  /// Returns `repeated`.
  bool expect(const sched::turn_decision& fresh, const step_plan& plan, bool repeated) const;

private:
  struct held {
    sched::turn_decision decision;
    std::uint64_t work;
    std::size_t active;
  };
  std::optional<held> held_;
  bool repeatable_ = false;
  std::vector<step_entry> last_step_;
  std::vector<plan_action> last_actions_; // none, or the refused prefetch
};

/// The last `capacity` switches of an instance, for its stats: when each began (on the actor
/// clock), from and to which model, and how long the weights took to come in.
class switch_log {
public:
  using time_point = std::chrono::steady_clock::time_point;
  static constexpr std::size_t capacity = recent_switches_kept;

  /// Records a switch that begins at `at`; returns its number for `scaled_up`.
  std::size_t began(time_point at, std::string from, std::string to, bool prefetched);
  /// The switch numbered `n` has its weights all in after `seconds` (ignored once dropped).
  void scaled_up(std::size_t n, double seconds);
  /// The switches kept, oldest first, with their ages at `now`.
  std::vector<switch_record> report(time_point now) const;

private:
  struct entry {
    time_point at;
    switch_record record;
  };
  std::deque<entry> entries_;
  std::size_t first_ = 0; // the number of entries_.front()
};

} // namespace aeg::actors
