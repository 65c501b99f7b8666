#include "actors/sched/quota.hpp"
#include "actors/sched/switch_policy.hpp"

#include <algorithm>
#include <deque>

namespace aeg::sched {

namespace {

const model_load* find(const instance_view& v, const std::string& name) {
  for (const auto& m : v.models)
    if (m.name == name)
      return &m;
  return nullptr;
}

class weighted_round_robin final : public switch_policy {
public:
  explicit weighted_round_robin(seconds max_quota) : max_quota_(max_quota) {}

  turn_decision decide(const instance_view& v) override {
    // The current turn goes on while its model has work and quota left.
    if (!round_.empty() && round_.front().model == v.active) {
      if (find(v, v.active) != nullptr && v.turn_elapsed < round_.front().quota)
        return {v.active, prefetch_after(v)};
      round_.pop_front();
    }
    // Turns of models that no longer have work are skipped.
    std::erase_if(round_, [&](const turn& t) { return find(v, t.model) == nullptr; });
    if (round_.empty())
      start_round(v);
    return {round_.front().model, prefetch_after(v)};
  }

private:
  struct turn {
    std::string model;
    seconds quota;
  };

  // Every model with work gets a turn, in the order its work arrived (same-model work is one
  // batch, so a model's turns are adjacent by construction).
  void start_round(const instance_view& v) {
    std::vector<batch_load> loads;
    seconds switches{0};
    for (const auto& m : v.models) {
      loads.push_back({m.step_time, m.tbt});
      switches += m.switch_time;
    }
    const auto q = assign_quotas(loads, switches, max_quota_);
    for (std::size_t i = 0; i < v.models.size(); ++i)
      round_.push_back({v.models[i].name, q.quotas[i]});
  }

  // The model of the turn after the current one: this round's next, else the next round's first.
  std::string prefetch_after(const instance_view& v) const {
    const std::string& current = round_.empty() ? v.active : round_.front().model;
    for (std::size_t i = 1; i < round_.size(); ++i)
      if (round_[i].model != current)
        return round_[i].model;
    for (const auto& m : v.models)
      if (m.name != current)
        return m.name;
    return {};
  }

  seconds max_quota_;
  std::deque<turn> round_;
};

class drain_first final : public switch_policy {
public:
  turn_decision decide(const instance_view& v) override {
    turn_decision d;
    // The active model while it has work; then the one whose work is oldest.
    d.run = !v.active.empty() && find(v, v.active) != nullptr ? v.active : v.models.front().name;
    for (const auto& m : v.models) // the next in line is prefetched
      if (m.name != d.run) {
        d.prefetch = m.name;
        break;
      }
    return d;
  }
};

} // namespace

std::unique_ptr<switch_policy> make_weighted_round_robin(seconds max_quota) {
  return std::make_unique<weighted_round_robin>(max_quota);
}

std::unique_ptr<switch_policy> make_drain_first() {
  return std::make_unique<drain_first>();
}

std::unique_ptr<switch_policy> make_switch_policy(const std::string& name, seconds max_quota,
                                                  std::size_t turn_steps) {
  if (name == "round_robin")
    return make_round_robin(turn_steps);
  if (name == "weighted_round_robin")
    return make_weighted_round_robin(max_quota);
  if (name == "drain_first")
    return make_drain_first();
  return nullptr;
}

} // namespace aeg::sched
