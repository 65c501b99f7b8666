#include "actors/sched/switch_policy.hpp"

#include <algorithm>

namespace aeg::sched {

namespace {

class round_robin final : public switch_policy {
public:
  explicit round_robin(std::size_t turn_steps)
      : turn_steps_(std::max<std::size_t>(turn_steps, 1)) {}

  turn_decision decide(const instance_view& v) override {
    auto has_work = [&](const std::string& name) {
      return std::any_of(v.models.begin(), v.models.end(),
                         [&](const model_load& m) { return m.name == name; });
    };
    // The model after `name` in the order of `v.models` (wrapping), or the first.
    auto after = [&](const std::string& name) -> const std::string& {
      auto it = std::find_if(v.models.begin(), v.models.end(),
                             [&](const model_load& m) { return m.name == name; });
      if (it == v.models.end() || ++it == v.models.end())
        return v.models.front().name;
      return it->name;
    };
    turn_decision d;
    if (!v.active.empty() && has_work(v.active) && v.turn_steps < turn_steps_) {
      d.run = v.active;
    } else {
      d.run = v.active.empty() ? v.models.front().name : after(v.active);
      d.new_turn = d.run == v.active; // alone with work: its turn ends and the next begins
      d.next_batch = d.new_turn;
    }
    const std::string& next = after(d.run);
    if (next != d.run)
      d.prefetch = next;
    return d;
  }

private:
  std::size_t turn_steps_;
};

} // namespace

std::unique_ptr<switch_policy> make_round_robin(std::size_t turn_steps) {
  return std::make_unique<round_robin>(turn_steps);
}

} // namespace aeg::sched
