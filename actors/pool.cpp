#include "actors/pool.hpp"

#include "actors/cluster.hpp"
#include "actors/handoff_desk.hpp"
#include "gpu/registry.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace aeg::actors {

namespace {

using footprints = std::map<std::string, models::model_footprint>;

// Every model's footprint, from its source (a GGUF's header or a synthetic shape).
result<footprints> plan_footprints(const pool_spec& spec, const models::compute_format& format) {
  footprints out;
  for (const auto& m : spec.models) {
    auto f = models::plan_footprint(m.source, format);
    if (!f)
      return fail(f.error().code, "model '" + m.name + "': " + f.error().message);
    out[m.name] = std::move(*f);
  }
  return out;
}

// An instance's sizing, and the device memory it needs at least (KV for one context of the
// tokens asked for, at least a slab).
struct instance_plan {
  models::instance_sizing sizing;
  models::device_plan need;
};

std::vector<instance_plan> plan_instances(const pool_spec& spec, const footprints& all,
                                          std::size_t tokens) {
  std::vector<instance_plan> plans;
  for (const auto& is : spec.instances) {
    std::vector<models::model_footprint> served;
    for (const auto& name : spec.models_of(is))
      served.push_back(all.at(name));
    auto sizing = sizing_of(std::move(served), instance_options_for(spec, is));
    const auto need = models::device_bytes_needed(sizing, tokens);
    plans.push_back({std::move(sizing), need});
  }
  return plans;
}

// What each device's instances need at least, summed.
std::vector<models::device_plan> device_needs(const pool_spec& spec,
                                              const std::vector<instance_plan>& plans) {
  std::vector<models::device_plan> needs(spec.devices.size());
  for (std::size_t d = 0; d < spec.devices.size(); ++d)
    for (std::size_t i = 0; i < spec.instances.size(); ++i)
      if (spec.instances[i].device == spec.devices[d].name) {
        needs[d].weights += plans[i].need.weights;
        needs[d].buffers += plans[i].need.buffers;
        needs[d].kv += plans[i].need.kv;
      }
  return needs;
}

result<void> check_needs(const pool_spec& spec, const std::vector<models::device_plan>& needs,
                         std::span<const std::size_t> capacities) {
  for (std::size_t d = 0; d < spec.devices.size(); ++d) {
    const auto& dev = spec.devices[d];
    const std::size_t have = d < capacities.size() ? capacities[d] : dev.memory_bytes;
    if (have != 0 && needs[d].total() > have)
      return tl::unexpected(models::does_not_fit(
          "device '" + dev.name + "'", have, needs[d],
          "give it more memory_mib, or lower max_batch_tokens, kv_mib or slab_mib"));
  }
  return {};
}

// Each instance's engine sizes, from the plans. An instance alone on its device takes what the
// device has free; instances that share one are each given their planned need and an even part
// of what the plans leave (to the unsized KV pools first), so none takes what the others were
// planned to get however their starts interleave.
std::vector<models::engine_options>
plan_engines(const pool_spec& spec, const std::vector<instance_plan>& plans,
             const std::vector<std::shared_ptr<gpu::device>>& devices) {
  std::vector<models::engine_options> engines(spec.instances.size());
  for (std::size_t d = 0; d < spec.devices.size(); ++d) {
    std::vector<std::size_t> on, unsized;
    std::size_t planned = 0;
    for (std::size_t i = 0; i < spec.instances.size(); ++i) {
      if (spec.instances[i].device != spec.devices[d].name)
        continue;
      planned += plans[i].need.total();
      on.push_back(i);
      if (spec.instances[i].kv_bytes == 0)
        unsized.push_back(i);
    }
    const std::size_t free = devices[d]->free_bytes();
    if (on.size() == 1) {
      engines[on.front()] = models::plan_engine(plans[on.front()].sizing, free);
      continue;
    }
    const auto& takers = unsized.empty() ? on : unsized;
    const std::size_t extra =
        free > planned ? (free - planned) / std::max<std::size_t>(takers.size(), 1) : 0;
    for (const auto i : on) {
      const bool taker = std::find(takers.begin(), takers.end(), i) != takers.end();
      engines[i] =
          models::plan_engine(plans[i].sizing, plans[i].need.total() + (taker ? extra : 0));
    }
  }
  return engines;
}

// The node's host KV pool carries every model's KV from prefill to decode: its slabs hold four
// of the largest block, and it holds at least one slab.
result<std::size_t> host_slab_bytes(const pool_spec& spec, const footprints& all) {
  std::vector<models::model_footprint> models;
  for (const auto& [name, f] : all)
    models.push_back(f);
  const std::size_t slab = models::slab_bytes_for(models, spec.slab_bytes);
  if (spec.host_kv_bytes < slab)
    return fail(errc::out_of_memory,
                "host_kv_mib " + std::to_string(spec.host_kv_bytes >> 20) +
                    " holds no KV slab: slabs hold four of the largest KV block, " +
                    std::to_string(models::mib_ceil(slab)) + " MiB here; give host_kv_mib " +
                    std::to_string(models::mib_ceil(slab)) + " or more");
  return slab;
}

result<std::vector<std::shared_ptr<gpu::device>>> make_devices(const pool_spec& spec) {
  std::vector<std::shared_ptr<gpu::device>> out;
  // Simulated CPU devices share the host's cores: one set of cores for all of them.
  const auto cores = spec.sim_profile && spec.sim_profile->shared_compute
                         ? std::make_shared<gpu::sim_cores>(spec.sim_clock)
                         : nullptr;
  for (const auto& d : spec.devices) {
    auto dev = gpu::make_device({.backend = d.backend,
                                 .ordinal = d.ordinal,
                                 .capacity_bytes = d.memory_bytes,
                                 .clock = spec.sim_clock,
                                 .profile = spec.sim_profile,
                                 .cores = cores});
    if (!dev)
      return fail(dev.error().code, "device '" + d.name + "': " + dev.error().message);
    if (d.backend != spec.devices.front().backend)
      return fail(errc::invalid_argument, "device '" + d.name + "': a pool runs one backend; the " +
                                              "others are " + spec.devices.front().backend);
    out.push_back(*dev);
  }
  return out;
}

std::size_t device_index(const pool_spec& spec, const std::string& name) {
  for (std::size_t d = 0; d < spec.devices.size(); ++d)
    if (spec.devices[d].name == name)
      return d;
  return spec.devices.size();
}

} // namespace

instance_options instance_options_for(const pool_spec& spec, const instance_spec& is) {
  instance_options o;
  o.role = is.role;
  o.kv_bytes = is.kv_bytes;
  o.weight_bytes = is.weight_bytes;
  o.max_batch_tokens = is.max_batch_tokens;
  o.max_seqs = is.max_seqs;
  o.slab_bytes = spec.slab_bytes;
  o.keep_resident = spec.policy.keep_resident;
  const auto policy = spec.policy;
  if (is.role != instance_role::prefill) {
    const std::string decode = policy.decode_policy();
    o.policy = [decode, policy] {
      return sched::make_switch_policy(decode, sched::seconds{policy.max_quota_seconds},
                                       policy.turn_steps);
    };
  }
  return o;
}

result<std::vector<models::device_plan>> device_memory_needed(const pool_spec& spec,
                                                              const models::compute_format& format,
                                                              std::size_t tokens) {
  AEG_TRY_ASSIGN(const auto all, plan_footprints(spec, format));
  return device_needs(spec, plan_instances(spec, all, tokens));
}

result<void> check_device_memory(const pool_spec& spec, const models::compute_format& format,
                                 std::span<const std::size_t> capacities) {
  AEG_TRY_ASSIGN(const auto needs, device_memory_needed(spec, format, 0));
  return check_needs(spec, needs, capacities);
}

namespace {

proxy_options proxy_options_for(const pool_spec& spec) {
  proxy_options po;
  po.route = spec.policy.route;
  po.max_group = spec.policy.max_group;
  po.scale_queue = spec.policy.scale_queue;
  po.max_replicas = spec.policy.max_replicas;
  po.max_queued = spec.max_queued;
  po.keep_finished = spec.keep_finished;
  return po;
}

} // namespace

result<std::unique_ptr<pool>> pool::join(caf::actor_system& sys, const pool_spec& spec,
                                         const std::function<void(const std::string&)>& log) {
  auto p = std::unique_ptr<pool>(new pool);
  p->spec_ = spec;
  p->remote_ = true;
  // A front end has no device: sizes as the CPU lays the models out, for estimates only.
  const auto format = models::compute_format::for_backend(gpu::backend_kind::cpu);
  AEG_TRY_ASSIGN(const auto all, plan_footprints(spec, format));
  auto key = read_key_file(spec.cluster_key_file);
  if (!key)
    return fail(key.error().code,
                "cluster_key_file '" + spec.cluster_key_file + "': " + key.error().message);
  std::vector<catalog_entry> catalog;
  for (const auto& m : spec.models) {
    const auto& f = all.at(m.name);
    catalog.push_back({m.name, m.ttft_seconds, m.tbt_seconds, f.config.context_length,
                       f.config.vocab_size, f.image_bytes, f.kv_block_bytes});
    p->configs_.emplace(m.name, f.config);
  }
  std::vector<pool_member> members;
  std::vector<node_info> joined;
  for (const auto& node : spec.nodes) {
    auto reached = join_node(sys, node.host, node.port, *key);
    if (!reached && reached.error().code != errc::unavailable)
      return tl::unexpected(reached.error()); // a wrong key: fix the setting
    if (!reached && log)                      // a node that is down now is joined when it comes
      log(reached.error().message + "; joining it when it is up");
    node_info info;
    if (reached)
      info = std::move(*reached);
    else
      info.node = node.host + ":" + std::to_string(node.port);
    joined.push_back(info);
    for (auto& inst : info.instances) {
      const auto name = info.node + "/" + inst.name;
      const auto role = role_named(inst.role);
      if (!role)
        return fail(errc::invalid_argument,
                    "instance '" + name + "' has the unknown role '" + inst.role + "'");
      std::erase_if(inst.models, [&](const std::string& m) { return !all.contains(m); });
      if (inst.models.empty())
        continue; // it serves none of the front end's models
      p->instances_.push_back(inst.handle);
      p->names_.push_back(name);
      // Prefill and decode instances keep their hand-offs inside their node (its host pool).
      members.push_back({inst.handle, *role, inst.models, name, 0, info.node});
    }
  }
  for (const auto& m : spec.models)
    if (std::none_of(members.begin(), members.end(), [&](const pool_member& x) {
          return std::count(x.models.begin(), x.models.end(), m.name) > 0;
        }))
      return fail(errc::unavailable, "model '" + m.name + "': no node that is up serves it");
  p->proxy_ = spawn_proxy(sys, std::move(members), std::move(catalog), proxy_options_for(spec));
  std::vector<std::string> names;
  for (const auto& m : spec.models)
    names.push_back(m.name);
  for (std::size_t i = 0; i < spec.nodes.size(); ++i)
    p->watchers_.push_back(watch_node(sys, p->proxy_, spec.nodes[i].host, spec.nodes[i].port,
                                      joined[i], *key, names, log));
  return p;
}

result<std::unique_ptr<pool>>
pool::start(caf::actor_system& sys, const pool_spec& spec,
            const std::function<void(const std::string&, std::size_t, std::size_t)>& progress,
            const std::function<void(const std::string&)>& log) {
  if (!spec.nodes.empty())
    return join(sys, spec, log);
  auto p = std::unique_ptr<pool>(new pool);
  p->spec_ = spec;
  AEG_TRY_ASSIGN(p->devices_, make_devices(spec));
  auto& first = p->devices_.front();
  auto format = models::compute_format::for_backend(first->kind());
  if (spec.sim_profile && spec.sim_profile->weight_layout == "cpu")
    format.sim_layout = gpu::backend_kind::cpu;
  // Planned once, and said before any model loads, not by an instance after minutes of loading.
  AEG_TRY_ASSIGN(const auto all, plan_footprints(spec, format));
  const auto plans = plan_instances(spec, all, 0);
  AEG_TRY_ASSIGN(const auto host_slab, host_slab_bytes(spec, all));
  {
    std::vector<std::size_t> capacities;
    for (const auto& d : p->devices_)
      capacities.push_back(d->capacity_bytes());
    AEG_TRY(check_needs(spec, device_needs(spec, plans), capacities));
  }
  p->cache_ = std::make_unique<models::model_cache>(
      first, models::model_cache::options{spec.host_cache_bytes, spec.shared_dir});
  std::vector<catalog_entry> catalog;
  std::map<std::string, served_model> served;
  for (const auto& m : spec.models) {
    auto image = p->cache_->add(m.name, m.source, format, [&](std::size_t done, std::size_t all) {
      if (progress)
        progress(m.name, done, all);
    });
    if (!image)
      return fail(image.error().code, "model '" + m.name + "': " + image.error().message);
    const auto& cfg = (*image)->config();
    catalog.push_back({m.name, m.ttft_seconds, m.tbt_seconds, cfg.context_length, cfg.vocab_size,
                       (*image)->bytes().size(), models::footprint_of(**image).kv_block_bytes});
    served[m.name] = {m.name, *image, m.tbt_seconds, m.ttft_seconds};
    p->configs_.emplace(m.name, cfg);
  }
  auto host = first->allocate_pinned(spec.host_kv_bytes);
  if (!host)
    return fail(host.error().code, "no pinned memory for the host KV pool (" +
                                       std::to_string(spec.host_kv_bytes >> 20) +
                                       " MiB): " + host.error().message);
  p->host_kv_ = std::make_shared<gpu::kv_pool>(std::move(*host), host_slab);

  const auto engines = plan_engines(spec, plans, p->devices_);
  if (std::any_of(spec.instances.begin(), spec.instances.end(),
                  [](const auto& is) { return is.role == instance_role::prefill; }))
    p->desk_ = spawn_handoff_desk(sys); // for front ends on other nodes (a worker's pool)
  std::vector<pool_member> members;
  for (std::size_t i = 0; i < spec.instances.size(); ++i) {
    const auto& is = spec.instances[i];
    std::vector<served_model> models;
    const auto names = spec.models_of(is);
    for (const auto& n : names)
      models.push_back(served.at(n));
    auto options = instance_options_for(spec, is);
    options.engine = engines[i];
    options.handoff_desk = p->desk_;
    auto actor = spawn_instance(sys, p->devices_[device_index(spec, is.device)], std::move(models),
                                std::move(options), p->host_kv_);
    const std::string name = is.device + "/" + to_string(is.role) + "#" + std::to_string(i);
    p->instances_.push_back(actor);
    p->names_.push_back(name);
    // The KV pool it makes, for decode placement.
    members.push_back({actor, is.role, names, name, engines[i].kv_bytes, is.node});
  }
  p->proxy_ = spawn_proxy(sys, std::move(members), std::move(catalog), proxy_options_for(spec));
  return p;
}

namespace {

// The words of an actor's exit reason: the message a failed coroutine left, else CAF's.
std::string reason_text(caf::actor_system& sys, const caf::error& e) {
  if (e.context().match_elements<std::string>())
    return e.context().get_as<std::string>(0);
  return sys.render(e);
}

} // namespace

result<void> pool::wait_started(caf::actor_system& sys, std::chrono::seconds timeout) const {
  caf::scoped_actor self{sys};
  for (std::size_t i = 0; i < instances_.size(); ++i) {
    // An instance makes its engine before it reads its first message: once it answers, it
    // is up; one that could not make it stops with the reason.
    self->monitor(instances_[i]);
    std::string failure;
    self->request(instances_[i], timeout, stats_atom::value)
        .receive([](const instance_stats&) {},
                 [&](const caf::error& e) { failure = reason_text(sys, e); });
    if (failure.empty()) {
      self->demonitor(instances_[i].address());
      continue;
    }
    self->receive(
        [&](const caf::down_msg& d) {
          if (d.reason)
            failure = reason_text(sys, d.reason);
        },
        caf::after(std::chrono::seconds(1)) >> [] {});
    return fail(errc::unavailable, "instance '" + names_[i] + "' did not start: " + failure);
  }
  return {};
}

pool::~pool() {
  for (auto& w : watchers_)
    caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(proxy_, caf::exit_reason::user_shutdown);
  if (desk_)
    caf::anon_send_exit(desk_, caf::exit_reason::user_shutdown);
  if (!remote_) // a worker's instances outlive a front end
    for (auto& a : instances_)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

} // namespace aeg::actors
