#include "actors/proxy.hpp"

#include "actors/proxy_members.hpp"
#include "actors/request.hpp"
#include "actors/sched/estimators.hpp"
#include "actors/sched/prefill_queue.hpp"
#include "kernels/kv_geometry.hpp"

#include <caf/actor_system.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <deque>
#include <limits>
#include <optional>
#include <unordered_map>

namespace aeg::actors {

namespace {

using proxy_detail::decode_sides, proxy_detail::none;
using proxy_detail::proxy_member;
using proxy_detail::proxy_request;

caf::error refuse(const std::string& why) {
  return caf::make_error(caf::sec::runtime_error, why);
}

class proxy final : public pool_proxy_actor::base {
public:
  proxy(caf::actor_config& cfg, std::vector<pool_member> members,
        std::vector<catalog_entry> catalog, proxy_options options)
      : pool_proxy_actor::base(cfg), options_(options), queue_(0, 1, {}) {
    for (auto& c : catalog)
      catalog_.emplace(c.name, std::move(c));
    std::size_t lanes = 0;
    for (auto& m : members) {
      member st;
      st.m = std::move(m);
      if (options_.route == routing::aegaeon && st.m.role == instance_role::prefill)
        st.lane = lanes++;
      members_.push_back(std::move(st));
    }
    lane_member_.resize(lanes);
    for (std::size_t i = 0; i < members_.size(); ++i)
      if (members_[i].lane != none)
        lane_member_[members_[i].lane] = i;
    queue_ = sched::prefill_queue(lanes, options_.max_group, [this](const std::string& model) {
      return sched::seconds{scale_up_seconds(model)};
    });
    // A lane serves a model while its instance does and its node can decode it.
    queue_.set_serves([this](std::size_t lane, const std::string& model) {
      const auto& p = members_[lane_member_[lane]];
      return p.serves(model) && sides_.of(members_, p.m.node, model).serving > 0;
    });
    // A lane is also a choice of decode node: one with no batch of the model must scale it up
    // too (a model spread over nodes switches on both); among equals, the one holding fewer.
    queue_.set_after([this](std::size_t lane, const std::string& model) {
      const auto d = sides_.of(members_, members_[lane_member_[lane]].m.node, model);
      const double scale_up = d.batch ? 0.0 : scale_up_seconds(model);
      return sched::seconds{d.decoders == 0 ? 1e9 : scale_up + 1e-6 * d.held / d.decoders};
    });
    set_down_handler([this](caf::down_msg& d) { member_down(d.source); });
  }

  behavior_type make_behavior() override {
    for (auto& m : members_)
      monitor(m.m.actor);
    return {
        [this](submit_atom, generation_request& r) -> caf::result<std::uint64_t> {
          return submit(std::move(r));
        },
        [this](cancel_atom, std::uint64_t id) { cancel(id); },
        [this](add_member_atom, pool_member& m) { add_member(std::move(m)); },
        [this](place_decode_atom, std::uint64_t id, std::size_t prompt_tokens, double seconds,
               double switch_rate) -> caf::result<instance_actor> {
          return place_decode(id, prompt_tokens, seconds, switch_rate);
        },
        [this](replace_atom, std::uint64_t id, generation_request& r) -> caf::result<void> {
          return replace(id, std::move(r));
        },
        [this](finished_atom, std::uint64_t id, request_metrics& m) { finished(id, std::move(m)); },
        [this](metrics_atom) { return metrics(); },
    };
  }

private:
  using member = proxy_member;
  using tracked = proxy_request;

  // Gives back what `t` was promised on its member's KV.
  void release_kv(tracked& t) {
    if (t.member != none && t.kv_promised != 0) {
      auto& m = members_[t.member];
      m.kv_promised -= std::min(m.kv_promised, t.kv_promised);
    }
    t.kv_promised = 0;
  }

  caf::result<std::uint64_t> submit(generation_request r) {
    auto it = catalog_.find(r.model);
    if (it == catalog_.end()) {
      ++rejected_;
      std::string names;
      for (const auto& [name, c] : catalog_)
        names += (names.empty() ? "" : ", ") + name;
      return refuse("unknown model '" + r.model + "'; this pool serves " + names);
    }
    if (requests_.size() >= options_.max_queued) {
      ++rejected_;
      return refuse(overloaded_prefix + std::to_string(requests_.size()) +
                    " requests in flight; retry later");
    }
    if (!any_alive_for(r.model)) {
      ++rejected_;
      if (std::none_of(members_.begin(), members_.end(),
                       [&](const member& m) { return m.serves(r.model); }))
        return refuse("model '" + r.model +
                      "' is placed on no instance of this pool (its placement left it out); "
                      "give the pool more devices or fewer models");
      return refuse("no running instance serves model '" + r.model + "'");
    }
    const auto id = ++next_id_;
    r.arrived = clock().now();
    auto actor =
        spawn_request(system(), caf::actor_cast<pool_proxy_actor>(this), id, r, it->second);
    tracked t;
    t.actor = actor;
    t.model = r.model;
    // A context cannot outgrow the model's (0 where the catalog does not say: nothing counted).
    t.kv_need = kernels::kv_geometry::blocks_for(
                    std::min(r.prompt.size() + r.max_tokens, it->second.context_length)) *
                it->second.kv_block_bytes;
    requests_.emplace(id, std::move(t));
    ++in_flight_by_model_[r.model];
    r.id = id;
    r.sink = actor;
    r.delivery = relayed(r.delivery); // the request actor times every token
    r.handoff = actor;
    place(id, std::move(r));
    return id;
  }

  bool any_alive_for(const std::string& model) const {
    return std::any_of(members_.begin(), members_.end(), [&](const member& m) {
      return m.alive && m.serves(model) &&
             (options_.route != routing::aegaeon || m.m.role != instance_role::decode ||
              !has_prefill_lanes());
    });
  }

  bool has_prefill_lanes() const {
    return std::any_of(members_.begin(), members_.end(),
                       [](const member& m) { return m.alive && m.lane != none; });
  }

  // Starts (or restarts) a request: into a prefill lane, or onto a colocated instance.
  void place(std::uint64_t id, generation_request r) {
    auto& t = requests_.at(id);
    if (options_.route == routing::aegaeon && has_prefill_lanes()) {
      const auto n = static_cast<double>(r.prompt.size());
      const sched::prefill_queue::estimate e{prefill_time(t.model).predict(r.prompt.size(), n * n)};
      sides_.clear(); // the members may have changed since the last placement
      const std::size_t lane = queue_.add(id, r.model, e);
      if (lane == sched::prefill_queue::no_instance) { // no prefill lane for it: a whole one
        if (const auto target = pick_colocated(t.model); target != none)
          return start_on(id, target, std::move(r), false);
        generation_result failed{id, finish_reason::error, r.prompt.size(), 0, {}, {}};
        failed.message = "no running instance can serve model '" + t.model +
                         "' now (no node has both a prefill and a decode instance for it)";
        send(t.actor, done_atom::value, std::move(failed));
        return;
      }
      t.lane = lane;
      t.queued = std::move(r);
      ++queued_by_model_[t.model];
      pump(lane);
      return;
    }
    const std::size_t target = pick_colocated(t.model);
    if (target == none) {
      send(t.actor, cancel_atom::value); // nothing to run it on (all gone): end it
      return;
    }
    start_on(id, target, std::move(r), false);
  }

  // Colocated routing (request-level, Aegaeon's without prefill instances, dedicated). A model's
  // replicas are the instances holding its requests: a request joins the one holding fewest,
  // unless each holds more than `scale_queue` and there are fewer than `max_replicas`
  // (ServerlessLLM's scale-up threshold). A model without a replica, or scaling up, takes the
  // least loaded instance; among equals one that ran it last (still warm), else the least
  // recently used (ServerlessLLM's LRU victim).
  std::size_t pick_colocated(const std::string& model) const {
    std::size_t replica = none, fresh = none, replicas = 0;
    const auto fewer = [&](std::size_t i, std::size_t j) {
      const auto &a = members_[i], &b = members_[j];
      if (a.total() != b.total())
        return a.total() < b.total();
      if ((a.last_model == model) != (b.last_model == model))
        return a.last_model == model;
      return a.last_started < b.last_started;
    };
    for (std::size_t i = 0; i < members_.size(); ++i) {
      const auto& m = members_[i];
      if (!m.alive || !m.serves(model) || m.m.role == instance_role::prefill)
        continue;
      if (m.holds(model) > 0) {
        ++replicas;
        if (replica == none || m.holds(model) < members_[replica].holds(model))
          replica = i;
      } else if (fresh == none || fewer(i, fresh)) {
        fresh = i;
      }
    }
    if (replica == none)
      return fresh;
    const bool scale = fresh != none && members_[replica].holds(model) > options_.scale_queue &&
                       (options_.max_replicas == 0 || replicas < options_.max_replicas);
    return scale ? fresh : replica;
  }

  void start_on(std::uint64_t id, std::size_t i, generation_request r, bool lane) {
    auto& t = requests_.at(id);
    auto& m = members_[i];
    t.member = i;
    t.holds_lane = lane;
    m.place(t.model);
    m.last_model = t.model;
    m.last_started = ++starts_;
    send(t.actor, placed_atom::value, m.m.actor);
    send(m.m.actor, generate_atom::value, std::move(r));
  }

  // Gives a prefill instance the next requests of its lane while it has room.
  void pump(std::size_t lane) {
    const std::size_t i = lane_member_[lane];
    auto& m = members_[i];
    while (m.alive && m.prefills < options_.prefill_in_flight) {
      const auto id = queue_.next(lane);
      if (!id)
        return;
      auto it = requests_.find(*id);
      if (it == requests_.end() || !it->second.queued)
        continue;
      auto r = std::move(*it->second.queued);
      it->second.queued.reset();
      --queued_by_model_[it->second.model];
      ++m.prefills;
      start_on(*id, i, std::move(r), true);
    }
  }

  // A model's prefill-time estimate, fitted from its measured prompts (until enough: the prior).
  sched::prefill_estimator& prefill_time(const std::string& model) {
    return prefill_time_.try_emplace(model, 0.0, 1.0 / options_.prefill_tokens_per_second, 0.0)
        .first->second;
  }

  // `t` leaves the instance it ran on: the KV promised there, its count among the model's
  // requests there, and its prefill slot (the lane gives the instance its next request).
  void leave_member(std::uint64_t id, tracked& t) {
    release_kv(t);
    if (t.member == none)
      return;
    auto& m = members_[t.member];
    m.leave(t.model);
    if (t.holds_lane) {
      t.holds_lane = false;
      queue_.finish(id);
      if (m.prefills > 0)
        --m.prefills;
      if (m.lane != none)
        pump(m.lane);
    }
    t.member = none;
  }

  // A prefill instance's measurements of the prompt it just read: how long it took, and how fast
  // the instance scales models up (0: not measured).
  void learn_prefill(const tracked& t, std::size_t prompt_tokens, double seconds,
                     double switch_rate) {
    if (switch_rate > 0)
      members_[t.member].switch_rate = switch_rate;
    if (seconds > 0 && prompt_tokens > 0) {
      const auto n = static_cast<double>(prompt_tokens);
      prefill_time(t.model).add(prompt_tokens, n * n, sched::seconds{seconds});
    }
  }

  // The one visit of a prefill-to-decode hand-off: the prefill instance is done with request
  // `id` (its slot goes to the lane's next request, its measurements teach the estimates), and a
  // decode instance takes it.
  caf::result<instance_actor> place_decode(std::uint64_t id, std::size_t prompt_tokens,
                                           double seconds, double switch_rate) {
    const auto found = requests_.find(id);
    if (found == requests_.end())
      return refuse("unknown request");
    auto& t = found->second;
    if (t.holds_lane)
      learn_prefill(t, prompt_tokens, seconds, switch_rate);
    // The KV is in the prefill instance's node: only that node's decode instances can take it.
    const std::string node = t.member != none ? members_[t.member].m.node : std::string();
    leave_member(id, t);
    const std::string& model = t.model;
    const std::size_t need = t.kv_need;
    std::vector<std::size_t> candidates;
    std::vector<std::vector<std::string>> batches;
    std::vector<bool> room;
    std::vector<double> free;
    for (std::size_t i = 0; i < members_.size(); ++i) {
      const auto& m = members_[i];
      if (!m.alive || !m.serves(model) || m.m.role != instance_role::decode || m.m.node != node)
        continue;
      candidates.push_back(i);
      std::vector<std::string> models;
      for (const auto& [name, k] : m.active())
        if (k > 0)
          models.push_back(name);
      batches.push_back(std::move(models));
      // Room while the contexts placed there could all grow to their end and still fit (a pool
      // of unknown size always has room; the instance splits its batch when it must).
      room.push_back(m.m.kv_bytes == 0 || m.kv_promised + need <= m.m.kv_bytes);
      free.push_back(m.m.kv_bytes != 0
                         ? static_cast<double>(m.m.kv_bytes) - static_cast<double>(m.kv_promised)
                         : -static_cast<double>(m.total()));
    }
    if (candidates.empty())
      return refuse("no running decode instance serves model '" + model + "'" +
                    (node.empty() ? std::string() : " on node '" + node + "'"));
    const std::size_t i = candidates[sched::place_decode(model, batches, room, free)];
    t.member = i;
    t.kv_promised = need;
    members_[i].kv_promised += need;
    members_[i].place(model);
    return members_[i].m.actor;
  }

  caf::result<void> replace(std::uint64_t id, generation_request r) {
    auto it = requests_.find(id);
    if (it == requests_.end())
      return refuse("unknown request");
    if (!any_alive_for(r.model))
      return refuse("no running instance serves model '" + r.model + "'");
    leave_member(id, it->second);
    place(id, std::move(r));
    return caf::unit;
  }

  void finished(std::uint64_t id, request_metrics m) {
    auto it = requests_.find(id);
    if (it != requests_.end()) {
      auto& t = it->second;
      if (t.queued) {
        queue_.remove(id);
        --queued_by_model_[t.model];
      }
      leave_member(id, t);
      if (auto f = in_flight_by_model_.find(t.model); f != in_flight_by_model_.end() && f->second)
        --f->second;
      requests_.erase(it);
    }
    auto& t = totals_[m.model];
    ++t.requests;
    t.tokens += m.token_times.size();
    t.tokens_on_time += m.tokens_on_time;
    t.attainment_sum += m.time_attainment();
    if (options_.keep_finished > 0) {
      if (finished_.size() >= options_.keep_finished)
        finished_.pop_front();
      finished_.push_back(std::move(m));
    }
  }

  void cancel(std::uint64_t id) {
    auto it = requests_.find(id);
    if (it == requests_.end())
      return;
    auto& t = it->second;
    if (t.queued) { // still waiting for a prefill instance: off the queue at once
      queue_.remove(id);
      --queued_by_model_[t.model];
      t.queued.reset();
    }
    send(t.actor, cancel_atom::value);
  }

  // An instance died: its queued prefills go to the other lanes; the requests it ran see it go
  // themselves (they monitor it) and ask to be placed again.
  void member_down(const caf::actor_addr& who) {
    for (std::size_t i = 0; i < members_.size(); ++i) {
      auto& m = members_[i];
      if (m.m.actor.address() != who || !m.alive)
        continue;
      m.alive = false;
      m.clear_active();
      m.kv_promised = 0;
      if (m.lane == none)
        continue;
      for (const auto id : queue_.drain(m.lane)) {
        auto it = requests_.find(id);
        if (it == requests_.end() || !it->second.queued)
          continue;
        auto r = std::move(*it->second.queued);
        it->second.queued.reset();
        --queued_by_model_[it->second.model];
        if (!any_alive_for(r.model)) {
          send(it->second.actor, cancel_atom::value);
          continue;
        }
        place(id, std::move(r));
      }
    }
  }

  // An instance of a node that joined again. A prefill instance takes the lane of the one of
  // its name that was lost (lanes are fixed when the proxy starts): the same node, back.
  void add_member(pool_member m) {
    member st;
    st.m = std::move(m);
    if (st.m.role == instance_role::prefill) {
      const auto old = std::find_if(members_.begin(), members_.end(), [&](const member& o) {
        return !o.alive && o.lane != none && o.m.name == st.m.name;
      });
      if (old == members_.end())
        return; // no lane for it
      st.lane = std::exchange(old->lane, none);
      lane_member_[st.lane] = members_.size();
      queue_.reopen(st.lane);
    }
    monitor(st.m.actor);
    members_.push_back(std::move(st));
    if (members_.back().lane != none)
      pump(members_.back().lane);
  }

  // Seconds to copy `model`'s weights in at the pool's switch rate (0: a model not served).
  double scale_up_seconds(const std::string& model) const {
    const auto it = catalog_.find(model);
    return it == catalog_.end()
               ? 0.0
               : static_cast<double>(it->second.image_bytes) / switch_bytes_per_second();
  }
  // The rate models scale up at on prefill instances: the mean of what they measured, else the
  // configured prior.
  double switch_bytes_per_second() const {
    double sum = 0;
    std::size_t n = 0;
    for (const auto& m : members_)
      if (m.switch_rate > 0) {
        sum += m.switch_rate;
        ++n;
      }
    return n == 0 ? options_.switch_bytes_per_second : sum / static_cast<double>(n);
  }

  pool_metrics metrics() const {
    pool_metrics p;
    p.switch_bytes_per_second = switch_bytes_per_second();
    p.finished.assign(finished_.begin(), finished_.end());
    p.totals = totals_;
    for (const auto& [model, n] : queued_by_model_)
      if (n > 0)
        p.queued_by_model[model] = n;
    for (const auto& [model, n] : in_flight_by_model_)
      if (n > 0)
        p.in_flight_by_model[model] = n;
    p.rejected = rejected_;
    for (const auto& m : members_) {
      p.instances_alive += m.alive;
      p.members.push_back({m.m.name, m.m.actor, m.alive});
    }
    return p;
  }

  proxy_options options_;
  std::map<std::string, catalog_entry> catalog_;
  std::vector<member> members_;
  decode_sides sides_; // this placement's: the queue asks for every lane
  std::vector<std::size_t> lane_member_;
  sched::prefill_queue queue_;
  std::unordered_map<std::uint64_t, tracked> requests_;
  std::map<std::string, std::size_t> queued_by_model_, in_flight_by_model_;
  std::unordered_map<std::string, sched::prefill_estimator> prefill_time_;
  std::deque<request_metrics> finished_;
  std::map<std::string, model_totals> totals_;
  std::uint64_t next_id_ = 0, starts_ = 0;
  std::size_t rejected_ = 0;
};

} // namespace

proxy_actor spawn_proxy(caf::actor_system& sys, std::vector<pool_member> members,
                        std::vector<catalog_entry> catalog, proxy_options options) {
  return sys.spawn<proxy>(std::move(members), std::move(catalog), options);
}

} // namespace aeg::actors
