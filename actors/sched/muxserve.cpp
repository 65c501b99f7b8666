#include "actors/sched/switch_policy.hpp"

#include <algorithm>

namespace aeg::sched {

namespace {

// MuxServe on one device: its (at most two) placed models take alternate steps while both have
// work, and the other one stays staged beside the active one, so that switching between them
// copies nothing once both were loaded. A model alone with work keeps the device; split into
// batches, they take turns of 16 steps as under request-level scaling.
class muxserve final : public switch_policy {
  static constexpr std::size_t split_turn_steps = 16;

public:
  turn_decision decide(const instance_view& v) override {
    turn_decision d;
    const auto active = std::find_if(v.models.begin(), v.models.end(),
                                     [&](const model_load& m) { return m.name == v.active; });
    // The first model with work that is not the active one: the next step's when the active one
    // just ran a step (alternation), else the one to keep staged.
    const auto other = std::find_if(v.models.begin(), v.models.end(),
                                    [&](const model_load& m) { return m.name != v.active; });
    if (other != v.models.end()) {
      d.run = other->name;
      if (active != v.models.end())
        d.prefetch = active->name; // already resident: the staging copies nothing
      return d;
    }
    // Only the active model has work.
    d.run = active->name;
    d.new_turn = active->batches > 1 && v.turn_steps >= split_turn_steps;
    d.next_batch = d.new_turn;
    return d;
  }
};

} // namespace

std::unique_ptr<switch_policy> make_muxserve() {
  return std::make_unique<muxserve>();
}

} // namespace aeg::sched
