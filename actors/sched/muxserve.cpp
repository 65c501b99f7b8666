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
    // The next model with work after the active one, in the view's order and around: the next
    // step's (alternation; with more than two placed models, each in turn, none starved).
    auto other = v.models.end();
    const std::size_t n = v.models.size();
    const std::size_t from = active == v.models.end() ? 0 : (active - v.models.begin()) + 1;
    for (std::size_t k = 0; k < n && other == v.models.end(); ++k)
      if (v.models[(from + k) % n].name != v.active)
        other = v.models.begin() + static_cast<std::ptrdiff_t>((from + k) % n);
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
