#include "actors/sched/quota.hpp"
#include "actors/sched/switch_policy.hpp"

#include <algorithm>
#include <deque>
#include <set>

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
    // Requests that have not started (on a colocated instance: waiting for their prefill, and
    // so for their first token) cut in: their model runs until they have all started, then the
    // round resumes where it was, and the model joins the round if it was not in it (a
    // mid-round join). Without this a request of a model outside the round could wait a whole
    // round, up to Q_MAX a turn, for its first token. One cut-in per model per round, at most
    // Q_MAX long, so a model whose requests cannot start (no KV room) never holds the device.
    const std::string current = round_.empty() ? std::string() : round_.front().model;
    const model_load* urgent = nullptr;
    for (const auto& m : v.models)
      if (m.waiting > 0 && m.name != current && (m.name == v.active || !cut_in_.contains(m.name)) &&
          (urgent == nullptr || m.oldest_wait > urgent->oldest_wait))
        urgent = &m;
    if (urgent != nullptr && !(urgent->name == v.active && v.turn_elapsed >= max_quota_)) {
      const bool fresh = cut_in_.insert(urgent->name).second;
      // The interrupted turn resumes with what is left of its quota (the switch back restarts
      // the instance's clock), so the cut-in does not lengthen the round; one that had run out
      // is over.
      if (!current.empty() && current == v.active) {
        if (v.turn_elapsed >= round_.front().quota)
          round_.pop_front();
        else
          round_.front().quota -= v.turn_elapsed;
      }
      join(v, urgent->name);
      // Prefetched meanwhile: the turn the round returns to.
      const std::string& back = round_.front().model;
      return {urgent->name, back != urgent->name ? back : prefetch_after(v),
              fresh && urgent->name == v.active};
    }
    // The current turn goes on while its model has work and quota left.
    if (!round_.empty() && round_.front().model == v.active) {
      if (find(v, v.active) != nullptr && v.turn_elapsed < round_.front().quota)
        return held({v.active, prefetch_after(v)}, v);
      round_.pop_front();
    }
    // Turns of models that no longer have work are skipped.
    std::erase_if(round_, [&](const turn& t) { return find(v, t.model) == nullptr; });
    if (round_.empty())
      start_round(v);
    // Reaching here, the front turn has not run yet; when its model is the active one (it ended
    // the last round or its cut-in, or its previous batch's turn), no switch will restart the
    // turn's clock, so ask for it.
    const bool again = round_.front().model == v.active;
    return held({round_.front().model, prefetch_after(v), again, again}, v);
  }

private:
  struct turn {
    std::string model;
    seconds quota;
  };

  // The turn `d` starts or goes on stands until its quota is spent, unless a request waits to
  // start: then any boundary may be a cut-in. Until then this policy answers from the branch
  // above that changes nothing.
  turn_decision held(turn_decision d, const instance_view& v) const {
    if (std::none_of(v.models.begin(), v.models.end(),
                     [](const model_load& m) { return m.waiting > 0; }))
      d.holds_below = round_.front().quota;
    return d;
  }

  // Adds turns for `name` to this round unless it has one, with the quotas they would get in a
  // round of everything that has work now.
  void join(const instance_view& v, const std::string& name) {
    for (const auto& t : round_)
      if (t.model == name)
        return;
    for (auto& t : turns(v))
      if (t.model == name)
        round_.push_back(std::move(t));
  }

  // A turn per batch, in the order the models' work arrived: a model's batches are adjacent.
  std::vector<turn> turns(const instance_view& v) const {
    std::vector<batch_load> loads;
    seconds switches{0};
    for (const auto& m : v.models) {
      for (std::size_t b = 0; b < std::max<std::size_t>(m.batches, 1); ++b)
        loads.push_back({m.step_time, m.tbt});
      switches += m.switch_time;
    }
    const auto q = assign_quotas(loads, switches, max_quota_);
    std::vector<turn> out;
    std::size_t k = 0;
    for (const auto& m : v.models)
      for (std::size_t b = 0; b < std::max<std::size_t>(m.batches, 1); ++b)
        out.push_back({m.name, q.quotas[k++]});
    return out;
  }

  void start_round(const instance_view& v) {
    cut_in_.clear();
    for (auto& t : turns(v))
      round_.push_back(std::move(t));
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
  std::set<std::string> cut_in_; // models that cut in during this round
};

class drain_first final : public switch_policy {
  static constexpr std::size_t split_turn_steps = 16;

public:
  turn_decision decide(const instance_view& v) override {
    turn_decision d;
    // The active model while it has work; then the one whose work is oldest.
    const model_load* active = v.active.empty() ? nullptr : find(v, v.active);
    d.run = active != nullptr ? v.active : v.models.front().name;
    // A model split into batches (its KV outgrew the device) serves them in turns of 16 steps,
    // so none waits for the others to drain.
    d.new_turn = active != nullptr && active->batches > 1 && v.turn_steps >= split_turn_steps;
    d.next_batch = d.new_turn;
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

} // namespace aeg::sched
