#include "apps/aegaeon/muxserve_pool.hpp"

#include "actors/sched/muxserve_placement.hpp"
#include "models/model_cache.hpp"

#include <map>

namespace aeg::apps {

result<std::vector<std::string>> place_muxserve(actors::pool_spec& spec,
                                                const std::vector<actors::trace_request>& trace,
                                                double duration, std::size_t device_bytes) {
  std::map<std::string, std::size_t> requests;
  for (const auto& t : trace)
    ++requests[t.model];
  // Weights as a simulated device holds them (the pool the placement is for).
  const auto format = models::compute_format::for_backend(gpu::backend_kind::sim);
  std::vector<sched::placement_model> models;
  std::map<std::string, std::size_t> weights;
  for (const auto& m : spec.models) {
    auto f = models::plan_footprint(m.source, format);
    if (!f)
      return fail(f.error().code, "model '" + m.name + "': " + f.error().message);
    const double rate = duration > 0 ? static_cast<double>(requests[m.name]) / duration : 0.0;
    models.push_back({m.name, f->image_bytes, rate});
    weights[m.name] = f->image_bytes;
  }
  const auto placed =
      sched::place_muxserve(models, spec.devices.size(), device_bytes, muxserve_kv_reserve_bytes);
  std::vector<actors::instance_spec> instances;
  for (auto& is : spec.instances) {
    std::size_t d = 0;
    while (d < spec.devices.size() && spec.devices[d].name != is.device)
      ++d;
    if (d == spec.devices.size() || placed.devices[d].empty())
      continue; // a device without a model has nothing to serve
    is.models = placed.devices[d];
    // Both resident: the weight memory holds the two side by side (the instance's own default
    // keeps room for a second model only when both take under half the device), and the KV
    // pool takes what is left.
    is.weight_bytes = 4096;
    for (const auto& name : is.models)
      is.weight_bytes += weights.at(name);
    instances.push_back(std::move(is));
  }
  spec.instances = std::move(instances);
  return placed.unplaced;
}

} // namespace aeg::apps
