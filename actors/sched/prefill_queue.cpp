#include "actors/sched/prefill_queue.hpp"

#include "coro/assert.hpp"

#include <algorithm>
#include <limits>

namespace aeg::sched {

prefill_queue::prefill_queue(std::size_t num_instances, std::size_t max_group,
                             switch_time_fn switch_time)
    : lanes_(num_instances), max_group_(std::max<std::size_t>(max_group, 1)),
      switch_time_(std::move(switch_time)) {}

seconds prefill_queue::work(std::size_t i) const {
  seconds total{0};
  const std::string* previous = &lanes_[i].active;
  // What the instance holds already counts: without it an instance busy with the requests it was
  // handed and an idle one would tie.
  for (const auto& s : lanes_[i].handed) {
    if (s.model != *previous)
      total += switch_time_(s.model);
    total += s.e.prefill;
    previous = &s.model;
  }
  for (const auto& g : lanes_[i].groups) {
    if (g.pending.empty())
      continue;
    if (g.model != *previous)
      total += switch_time_(g.model);
    for (const auto& e : g.pending)
      total += e.e.prefill;
    previous = &g.model;
  }
  return total;
}

std::size_t prefill_queue::add(std::uint64_t id, const std::string& model, estimate e) {
  // Existing groups come first: join any queued group of this model with room.
  const auto serves = [&](std::size_t i) { return !serves_ || serves_(i, model); };
  for (std::size_t i = 0; i < lanes_.size(); ++i)
    for (auto& g : lanes_[i].groups) // a drained lane has none
      if (g.model == model && g.cumulative < max_group_ && serves(i)) {
        g.pending.push_back({id, e});
        ++g.cumulative;
        return i;
      }
  // Otherwise a new group on the instance with the least estimated work; among equals (idle
  // instances, most often) the one whose decode side is least loaded, then the lowest index, so
  // that the choice is deterministic. A drained lane has no work left and would win every time,
  // though nothing will ever run there.
  std::size_t best = lanes_.size();
  seconds best_work = seconds{std::numeric_limits<double>::max()};
  for (std::size_t i = 0; i < lanes_.size(); ++i) {
    if (!lanes_[i].open || !serves(i))
      continue;
    const seconds w = work(i) + (after_ ? after_(i, model) : seconds{0});
    if (best == lanes_.size() || w < best_work) {
      best_work = w;
      best = i;
    }
  }
  if (best == lanes_.size())
    return no_instance;
  group g;
  g.model = model;
  g.cumulative = 1;
  g.pending.push_back({id, e});
  lanes_[best].groups.push_back(std::move(g));
  return best;
}

std::optional<std::uint64_t> prefill_queue::next(std::size_t i) {
  auto& groups = lanes_[i].groups;
  while (!groups.empty() && groups.front().pending.empty())
    groups.pop_front(); // a finished group leaves the queue
  if (groups.empty())
    return std::nullopt;
  auto& g = groups.front();
  const auto [id, e] = g.pending.front();
  g.pending.pop_front();
  lanes_[i].handed.push_back({id, g.model, e});
  if (g.pending.empty())
    groups.pop_front(); // done: a later request of its model starts a group at the back
  return id;
}

void prefill_queue::finish(std::uint64_t id) {
  for (auto& lane : lanes_)
    for (auto it = lane.handed.begin(); it != lane.handed.end(); ++it)
      if (it->id == id) {
        lane.active = it->model;
        lane.handed.erase(it);
        return;
      }
}

bool prefill_queue::remove(std::uint64_t id) {
  for (auto& lane : lanes_)
    for (auto& g : lane.groups)
      for (auto it = g.pending.begin(); it != g.pending.end(); ++it)
        if (it->id == id) {
          g.pending.erase(it);
          return true;
        }
  return false;
}

void prefill_queue::set_active(std::size_t i, const std::string& model) {
  lanes_[i].active = model;
}

std::vector<std::uint64_t> prefill_queue::drain(std::size_t i) {
  std::vector<std::uint64_t> ids;
  for (auto& g : lanes_[i].groups)
    for (const auto& e : g.pending)
      ids.push_back(e.id);
  lanes_[i].groups.clear();
  lanes_[i].handed.clear();
  lanes_[i].open = false;
  return ids;
}

std::size_t prefill_queue::size(std::size_t i) const {
  std::size_t n = 0;
  for (const auto& g : lanes_[i].groups)
    n += g.pending.size();
  return n;
}

std::vector<std::string> prefill_queue::groups(std::size_t i) const {
  std::vector<std::string> out;
  for (const auto& g : lanes_[i].groups)
    if (!g.pending.empty())
      out.push_back(g.model);
  return out;
}

std::size_t place_decode(const std::string& model,
                         const std::vector<std::vector<std::string>>& batches,
                         const std::vector<bool>& kv_room, const std::vector<double>& free_kv) {
  for (std::size_t i = 0; i < batches.size(); ++i)
    if (kv_room[i] && std::find(batches[i].begin(), batches[i].end(), model) != batches[i].end())
      return i;
  std::size_t best = 0;
  for (std::size_t i = 1; i < batches.size(); ++i) {
    const bool fewer = batches[i].size() < batches[best].size();
    const bool same = batches[i].size() == batches[best].size();
    if (fewer || (same && free_kv[i] > free_kv[best]))
      best = i;
  }
  return best;
}

} // namespace aeg::sched
