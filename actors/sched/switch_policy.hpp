#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace aeg::sched {

using seconds = std::chrono::duration<double>;

/// One model's work on an instance.
struct model_load {
  std::string name;
  std::size_t waiting = 0; ///< requests not yet holding KV
  std::size_t running = 0; ///< requests with KV (on the device or swapped out)
  seconds oldest_wait{0};  ///< how long its oldest waiting request has waited
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
/// turn early; the next model in line is prefetched while one runs.
std::unique_ptr<switch_policy> make_round_robin(std::size_t turn_steps);

} // namespace aeg::sched
