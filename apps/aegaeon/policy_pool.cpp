#include "apps/aegaeon/policy_pool.hpp"

namespace aeg::apps {

actors::pool_spec policy_pool(const pool_shape& shape, const std::string& policy,
                              std::vector<actors::model_spec> models) {
  actors::pool_spec s;
  for (std::size_t i = 0; i < shape.devices; ++i)
    s.devices.push_back(
        {"d" + std::to_string(i), shape.backend, static_cast<int>(i), shape.device_bytes});
  const bool split = (policy == "aegaeon" || policy == "fcfs") && shape.prefill_devices > 0;
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
  s.policy.route = policy == "request_level" ? actors::routing::request_level
                   : policy == "dedicated"   ? actors::routing::dedicated
                                             : actors::routing::aegaeon;
  s.policy.max_group = policy == "fcfs" ? 1 : 8;
  s.policy.decode = "weighted_round_robin";
  return s;
}

} // namespace aeg::apps
