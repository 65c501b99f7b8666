#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace aeg::sched {

using seconds = std::chrono::duration<double>;

/// One model's work on an instance, with the instance's estimates for it.
struct model_load {
  std::string name;
  std::size_t waiting = 0; ///< requests not yet holding KV
  std::size_t running = 0; ///< requests with KV (on the device or swapped out)
  seconds oldest_wait{0};  ///< how long its oldest waiting request has waited
  seconds step_time{0.02}; ///< estimated time of one decode step of its batch
  seconds switch_time{0};  ///< estimated time to scale it up when it is not on the device
  seconds tbt{0.1};        ///< the time between tokens its requests are promised
  /// Batches its running requests form: more than one once their KV outgrew the device. Each
  /// batch gets a turn of its own; the instance serves the next one at each new turn.
  std::size_t batches = 1;
  /// Tokens its shortest request may still generate (its max_tokens less those made; a
  /// simulated trace's requests make exactly that many): a shortest-job policy's oracle.
  std::size_t shortest_job = 0;
};

/// What an instance knows at a step boundary.
struct instance_view {
  std::string active;             ///< the model the last step ran (empty: none)
  std::string staged;             ///< the model being or already prefetched (empty: none)
  std::vector<model_load> models; ///< models with work, in the order their work arrived
  std::size_t turn_steps = 0;     ///< steps the active model has run in its current turn
  seconds turn_elapsed{0};        ///< time since its turn began
};

/// The next step's model, and what to prefetch meanwhile.
struct turn_decision {
  std::string run;      ///< the model the next step runs; a switch when it is not `active`
  std::string prefetch; ///< the model to copy in beside it (empty: none)
  /// A new turn of the model already active (a round ended and the next begins with it): the
  /// instance restarts the turn's clock as it does on a switch.
  bool new_turn = false;
  /// With `new_turn`: the turn belongs to the model's next batch (a split model's batches take
  /// turns). False for a turn that only lets waiting requests start (a cut-in), which keeps the
  /// batch. A switch into a model always serves its next batch.
  bool next_batch = false;
  /// How long the decision stands: a promise that, at each later step boundary of this turn
  /// whose `turn_elapsed` is below this, the policy would decide the same `run` and `prefetch`
  /// (without `new_turn`) and change nothing of its own, as long as the work it was shown stays
  /// as it was (no request arrives, starts or ends). The instance keeps no decision made while
  /// a model with work was blocked (left out of the view, and unblocked by the next step).
  /// Otherwise it skips asking, and skips making the view for it. Zero: ask at every boundary. A
  /// promise may not rest on the estimates (`step_time`, `switch_time`) or on `staged`, which move
  /// anyway.
  seconds holds_below{0};
};

/// Chooses which model an instance runs at each step boundary: the preemption points of
/// token-level scheduling. Plain, deterministic code: same view, same decision.
class switch_policy {
public:
  virtual ~switch_policy() = default;
  /// Called at a step boundary when at least one model has work.
  virtual turn_decision decide(const instance_view& view) = 0;
};

/// Turns of `turn_steps` steps in the order models got work; a model with no work left ends its
/// turn early; the next model in line is prefetched while one runs. A model alone with work
/// still takes turns (each a new turn, so a split model's batches alternate).
std::unique_ptr<switch_policy> make_round_robin(std::size_t turn_steps);

/// Aegaeon's batched weighted round-robin (decode): a round gives each batch a turn of the quota
/// `assign_quotas` computes from the estimates in the view (a model's requests are one batch
/// until their KV overflows the device; a split model's turns are adjacent, each a new turn);
/// models whose work arrives mid-round wait for the next round; the model of the next turn is
/// prefetched during the current one.
std::unique_ptr<switch_policy> make_weighted_round_robin(seconds max_quota = seconds{4.0});

/// Request-level scaling (the ServerlessLLM-like baseline; also the order of a prefill instance,
/// whose queue the grouped FCFS dispatcher already ordered): the active model keeps the device
/// until its requests have drained; then the model whose work is oldest takes it. The next model
/// in line is prefetched. A model split into batches serves them in turns of 16 steps.
std::unique_ptr<switch_policy> make_drain_first();

/// ServerlessLLM as the paper evaluated it, at request level: a device keeps its model until
/// that model's requests have drained, then loads the model whose work arrived first, on demand
/// (nothing prefetched).
std::unique_ptr<switch_policy> make_serverless_llm();

/// ServerlessLLM+: as `make_serverless_llm`, but the next model is the one with the shortest
/// job waiting (oracle output lengths), the paper's shortest-remaining-time-first reordering of
/// each worker's queue; a model's running requests are never preempted.
std::unique_ptr<switch_policy> make_serverless_llm_plus();

/// MuxServe's multiplexing of the (at most two) models placed on a device, both resident: the
/// models with work take alternate steps (each step one model's batch), and the other one is
/// kept staged beside the active one, so that with an instance that keeps a leaving model's
/// weights (`instance_options::keep_resident`) a switch copies nothing. Alternating steps stands
/// in for MuxServe's concurrent kernels on partitioned SMs: decode is memory-bound, so two models'
/// steps one after the other take about as long as the two run together.
std::unique_ptr<switch_policy> make_muxserve();

/// Makes a policy by name: "round_robin" (turns of `turn_steps`), "weighted_round_robin",
/// "drain_first" (see switch_policies.cpp, where new ones are listed). Null for an unknown name.
std::unique_ptr<switch_policy> make_switch_policy(const std::string& name, seconds max_quota,
                                                  std::size_t turn_steps);

/// The names `make_switch_policy` knows.
std::vector<std::string> switch_policy_names();

} // namespace aeg::sched
