#pragma once

#include "actors/generation.hpp"
#include "actors/instance.hpp"
#include "actors/sched/deadlines.hpp"
#include "actors/sched/estimators.hpp"
#include "actors/step_plan.hpp"
#include "models/engine.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace aeg::actors {

/// A request on an instance: what it asked for, its tokens, and its KV.
struct sequence {
  generation_request request;
  std::size_t model = 0;
  std::vector<std::int32_t> tokens; ///< prompt, then what was generated
  std::size_t generated = 0;
  models::kv_handle kv;    ///< kv.tokens: leading tokens whose K and V are stored
  std::uint64_t batch = 0; ///< which of its model's batches it decodes in
  bool cancelled = false;  ///< cancelled while in a step: it ends when the step does
  bool in_step = false;
  std::uint64_t last_step = 0; ///< for swapping out the least recently stepped first
  std::chrono::steady_clock::time_point arrived{}; ///< on the actor clock
  sched::token_deadlines deadlines{0, 0};          ///< when its next token is due
  double prefill_seconds = 0; ///< steps spent on its prompt (measured on a prefill instance)
  bool shared_prompt = false; ///< its prompt's KV was copied from its group's leader
  service_times service;      ///< the steps it was in here, split by phase and cause
  /// Tokens made and not yet sent, with when each was made: a batched delivery's next batch.
  std::vector<std::int32_t> unsent;
  std::vector<std::chrono::steady_clock::time_point> unsent_at;
};

/// A model an instance serves: its image, its requests and its turns.
struct model_state {
  served_model served;
  kernels::kv_geometry kv;
  sched::decode_estimator decode_time; ///< fitted from this model's measured decode steps
  std::deque<sequence*> running;       ///< holding KV (device or host), in admission order
  std::deque<sequence*> waiting;       ///< not yet holding KV

  bool has_work() const noexcept { return !running.empty() || !waiting.empty(); }
};

/// What an instance holds, as plain C++: its models, its requests (each on its model's running
/// or waiting list), and what its steps teach it. The instance actor owns one and uses it from
/// inside the actor only; the engine and the messages stay with the actor.
class instance_state {
public:
  instance_state(std::vector<served_model> models, std::size_t max_batch_tokens);
  // Its view points into its models: it stays where it was made.
  instance_state(const instance_state&) = delete;
  instance_state& operator=(const instance_state&) = delete;

  // --- requests --------------------------------------------------------------------------
  /// The model `r` names (none needed when there is one), or why it cannot run here.
  result<std::size_t> model_for(const generation_request& r) const;
  /// Why `r`'s prompt cannot run on `model` (a prefill instance also needs somewhere to hand it
  /// on), or nothing.
  std::optional<std::string> prompt_error(const generation_request& r, std::size_t model,
                                          bool prefill) const;
  /// Why a request prefilled elsewhere cannot continue on `model` here (its KV is not on the
  /// host in `model`'s shape, or does not match its tokens), or nothing.
  std::optional<std::string> job_error(const decode_job& job, std::size_t model) const;
  /// Takes `seq` for `model`: waiting for its prompt, or (`running`: prefilled elsewhere) in
  /// the batch its model's turns serve now. Its deadlines count from the client's arrival (`now`
  /// when the request does not say).
  sequence& add(std::unique_ptr<sequence> seq, std::size_t model, bool running,
                std::chrono::steady_clock::time_point now);
  /// The request `id` (null when it has ended).
  sequence* find(std::uint64_t id) const;
  sequence& at(std::uint64_t id) const { return *seqs_.at(id); }
  /// Takes `seq` off its model's lists (it stays known).
  void forget(sequence& seq);
  /// Ends `seq`'s life here: off every list, destroyed.
  void erase(sequence& seq);
  /// A waiting `seq` starts running in `batch`.
  void start(sequence& seq, std::uint64_t batch);
  /// `seq` (its KV given back) goes to the front of its model's waiting list, to be recomputed.
  void requeue(sequence& seq);
  bool has_work() const;
  /// Requests running (holding KV) and waiting, over every model.
  std::pair<std::size_t, std::size_t> counts() const;
  const std::unordered_map<std::uint64_t, std::unique_ptr<sequence>>& sequences() const {
    return seqs_;
  }
  std::vector<model_state>& models() noexcept { return models_; }
  const std::vector<model_state>& models() const noexcept { return models_; }
  /// Forgets every request (the instance failed or stopped; their ends were told).
  void clear();
  /// Counts the changes to the work a switch policy sees: a request added, ended, or moved off
  /// its model's lists (started, preempted); `work_changed` counts others (a batch split).
  std::uint64_t work_version() const noexcept { return work_version_; }
  void work_changed() noexcept { ++work_version_; }

  // --- planning ----------------------------------------------------------------------------
  /// The view the planner reads: these models and requests, with the pools' ledgers and the
  /// actor's turn (`active`, `staged`: model indexes or none). Updated in a view this state
  /// keeps, which the plan may change (`plan_step_in_place`) until the next call: a step then
  /// rewrites what may have changed since (see `touch`) without making and freeing a view of
  /// every served model and request.
  step_view& view(step_limits_view limits, gpu::kv_ledger_copy device, gpu::kv_ledger_copy host,
                  std::size_t active, std::size_t staged,
                  const sched::switch_estimator& switch_time, std::size_t turn_steps,
                  std::chrono::steady_clock::time_point turn_started,
                  std::chrono::steady_clock::time_point now);
  /// The sequences a plan named (in its actions and its step) changed, or will once the step
  /// has run: the next view rewrites theirs. Every other sequence's view is kept as it was, so
  /// that a step costs what it touches, not every request the instance holds.
  void touch(const step_plan& plan);
  /// Rewrites every sequence's view at the next `view` (a plan applied only in part).
  void touch_all() noexcept { all_touched_ = true; }
  /// For tests, process-wide: every `view` is also compared with one built from scratch, and a
  /// difference (a change to a request that no plan named) throws `errc::internal`.
  static void check_views(bool on) noexcept;
  /// Model `model`'s batch turns, as the last plan left them (kept in the view, which the plans
  /// change in place).
  const batch_turns& turns(std::size_t model) const { return view_.models[model].turns; }
  /// Whether the planner, given the decision that planned `step` (a decode step of `active`'s
  /// batch with no actions), would plan the same step again now, when nothing but that step has
  /// happened since (`work_version` unchanged): `step` is every request of the batch, in order,
  /// each with its token pending, its KV on the device with nothing arriving and room for the
  /// token in the blocks it has, and nothing waits to start. Then the instance runs the step
  /// again without making a view or a plan.
  bool step_repeats(const std::vector<step_entry>& step, std::size_t active) const;
  /// Whether tests compare every view with one built from scratch (`check_views`).
  static bool checking_views() noexcept;

  // --- learning from steps -------------------------------------------------------------------
  /// A step of model `active` ran `step` (for the requests `seqs`, in its order) in `took`:
  /// decode-only steps teach the model's step-time estimate; steps with prompt tokens beside
  /// decoding sequences steer how many such a step may take (see `prompt_allowance`).
  void learn(const std::vector<step_entry>& step, const std::vector<sequence*>& seqs,
             std::size_t active, std::chrono::steady_clock::duration took,
             std::chrono::steady_clock::time_point now);
  /// Prompt tokens a step may run beside decoding sequences: what those can spare before their
  /// next tokens are due.
  std::size_t prompt_allowance() const noexcept { return prompt_allowance_; }

private:
  void fit_prompt_allowance(const std::vector<step_entry>& step, const std::vector<sequence*>& seqs,
                            const model_state& m, std::chrono::steady_clock::duration took,
                            std::chrono::steady_clock::time_point now);

  std::vector<model_state> models_;
  std::unordered_map<std::uint64_t, std::unique_ptr<sequence>> seqs_;
  std::uint64_t work_counter_ = 0;
  std::uint64_t work_version_ = 0;
  std::size_t max_batch_tokens_;
  std::size_t prompt_allowance_;
  // The last view, as its plan left it. Its models' turns and blocked flags live only here, from
  // one plan to the next.
  step_view view_;
  // Sequences whose views the next `view` rewrites: those added or named by a plan since the
  // last, and those whose KV was still arriving then (a copy completes without a message).
  std::vector<std::uint64_t> touched_, arriving_;
  bool all_touched_ = true;
  // Models whose lists the next `view` rebuilds: those with work, and those whose view still
  // lists requests. A model gets work only through `add`.
  std::vector<std::size_t> listed_;
  std::vector<bool> is_listed_;
  void expect_view_current() const;
};

} // namespace aeg::actors
