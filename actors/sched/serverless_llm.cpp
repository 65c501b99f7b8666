#include "actors/sched/switch_policy.hpp"

#include <algorithm>

namespace aeg::sched {

namespace {

// Request-level scaling as the paper's simulator ran ServerlessLLM: the model on the device keeps
// it until its requests have drained (a split model's batches take turns of 16 steps); the next
// model is loaded only then, on demand. `shortest_first` picks that model by its shortest job
// (ServerlessLLM+), else by the age of its work (FIFO).
class serverless_llm final : public switch_policy {
  static constexpr std::size_t split_turn_steps = 16;

public:
  explicit serverless_llm(bool shortest_first) : shortest_first_(shortest_first) {}

  turn_decision decide(const instance_view& v) override {
    turn_decision d;
    const auto active = std::find_if(v.models.begin(), v.models.end(),
                                     [&](const model_load& m) { return m.name == v.active; });
    if (active != v.models.end()) {
      d.run = active->name;
      d.new_turn = active->batches > 1 && v.turn_steps >= split_turn_steps;
      d.next_batch = d.new_turn;
      return d;
    }
    // `models` is in the order work arrived: the first is FIFO's pick, and the stable minimum
    // breaks ties between equal jobs the same way.
    auto next = v.models.begin();
    if (shortest_first_)
      next = std::min_element(
          v.models.begin(), v.models.end(),
          [](const model_load& a, const model_load& b) { return a.shortest_job < b.shortest_job; });
    d.run = next->name;
    return d; // nothing prefetched: ServerlessLLM loads a model when it is needed
  }

private:
  bool shortest_first_;
};

} // namespace

std::unique_ptr<switch_policy> make_serverless_llm() {
  return std::make_unique<serverless_llm>(false);
}

std::unique_ptr<switch_policy> make_serverless_llm_plus() {
  return std::make_unique<serverless_llm>(true);
}

} // namespace aeg::sched
