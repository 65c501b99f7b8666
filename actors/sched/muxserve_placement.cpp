#include "actors/sched/muxserve_placement.hpp"

#include <algorithm>
#include <numeric>

namespace aeg::sched {

namespace {
// MuxServe never put more than two models on a GPU in the paper's evaluation (§7.2).
constexpr std::size_t models_per_device = 2;
} // namespace

muxserve_placement place_muxserve(const std::vector<placement_model>& models, std::size_t devices,
                                  std::size_t device_bytes, std::size_t kv_reserve_bytes) {
  muxserve_placement out;
  out.devices.resize(devices);
  const std::size_t budget = device_bytes > kv_reserve_bytes ? device_bytes - kv_reserve_bytes : 0;
  std::vector<std::size_t> used(devices, 0);
  std::vector<std::size_t> order(models.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return models[a].rate * static_cast<double>(models[a].weight_bytes) >
           models[b].rate * static_cast<double>(models[b].weight_bytes);
  });
  std::vector<bool> placed(models.size(), false);
  for (const auto i : order) {
    const auto& m = models[i];
    std::size_t best = devices;
    for (std::size_t d = 0; d < devices; ++d) {
      if (out.devices[d].size() >= models_per_device || used[d] + m.weight_bytes > budget)
        continue;
      if (best == devices || used[d] < used[best])
        best = d;
    }
    if (best == devices)
      continue;
    out.devices[best].push_back(m.name);
    used[best] += m.weight_bytes;
    placed[i] = true;
  }
  for (std::size_t i = 0; i < models.size(); ++i)
    if (!placed[i])
      out.unplaced.push_back(models[i].name);
  return out;
}

} // namespace aeg::sched
