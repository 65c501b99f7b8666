#include "apps/aegaeon/policy_pool.hpp"

#include "actors/sched/switch_policy.hpp"

#include <algorithm>

namespace aeg::apps {

std::vector<std::string> pool_policy_names() {
  auto names = pool_policies;
  for (auto& n : sched::switch_policy_names())
    if (std::find(names.begin(), names.end(), n) == names.end())
      names.push_back(std::move(n));
  return names;
}

bool splits_prefill(const std::string& policy) {
  // A switch policy by name runs in Aegaeon's pool.
  const bool token_level =
      std::find(pool_policies.begin(), pool_policies.end(), policy) == pool_policies.end();
  return policy == "aegaeon" || policy == "fcfs" || token_level;
}

actors::pool_spec policy_pool(const pool_shape& shape, const std::string& policy,
                              std::vector<actors::model_spec> models) {
  actors::pool_spec s;
  for (std::size_t i = 0; i < shape.devices; ++i)
    s.devices.push_back(
        {"d" + std::to_string(i), shape.backend, static_cast<int>(i), shape.device_bytes});
  const bool split = splits_prefill(policy) && shape.prefill_devices > 0;
  for (std::size_t i = 0; i < shape.devices; ++i) {
    actors::instance_spec is;
    is.device = "d" + std::to_string(i);
    is.max_batch_tokens = shape.max_batch_tokens;
    is.max_seqs = shape.max_seqs;
    if (split)
      is.role = i < shape.prefill_devices ? actors::instance_role::prefill
                                          : actors::instance_role::decode;
    if (policy == "dedicated") {
      if (i >= models.size())
        continue;
      is.models = {models[i].name};
    }
    s.instances.push_back(is);
  }
  s.models = std::move(models);
  s.policy.route = policy == "request_level" || serverless_baseline(policy)
                       ? actors::routing::request_level
                   : policy == "dedicated" || policy == "muxserve" ? actors::routing::dedicated
                                                                   : actors::routing::aegaeon;
  s.policy.keep_resident = policy == "muxserve";
  s.policy.max_group = policy == "fcfs" ? 1 : 8;
  // Otherwise empty: the routing's own policy.
  const bool token_level = // a switch policy by name, in Aegaeon's pool
      std::find(pool_policies.begin(), pool_policies.end(), policy) == pool_policies.end();
  s.policy.decode =
      token_level || serverless_baseline(policy) || policy == "muxserve" ? policy : std::string{};
  return s;
}

} // namespace aeg::apps
