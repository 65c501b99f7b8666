#pragma once

#include "actors/topology.hpp"

#include <cstddef>
#include <string>
#include <vector>

namespace aeg::apps {

/// The policies a pool can be built for: Aegaeon's (token-level, prefill and decode apart),
/// ServerlessLLM-like request-level scaling, one model per device, and Aegaeon without grouping.
/// MuxServe's static placement (at most two resident models per device; `place_muxserve`).
inline const std::vector<std::string> pool_policies = {
    "aegaeon",        "request_level",       "dedicated", "fcfs",
    "serverless_llm", "serverless_llm_plus", "muxserve"};

/// Whether `policy` is one of the paper's ServerlessLLM baselines, whose loader the paper's
/// simulator ran at 16 GB/s.
inline bool serverless_baseline(const std::string& policy) {
  return policy == "serverless_llm" || policy == "serverless_llm_plus";
}
/// The loading speed the paper's simulator gave ServerlessLLM, bytes per second.
inline constexpr double serverless_load_bytes_per_second = 16e9;

/// `pool_policies` and every decode switch policy by name (`sched::switch_policy_names`): a
/// switch policy's pool is Aegaeon's with that policy on its decode instances.
std::vector<std::string> pool_policy_names();

/// Whether `policy`'s pool gives its prefill-only devices (`pool_shape::prefill_devices`) a role:
/// Aegaeon's, FCFS's and a switch policy's; the others' devices are all colocated.
bool splits_prefill(const std::string& policy);

/// The devices of an experiment's pools, the same under every policy.
struct pool_shape {
  std::string backend = "cpu";
  std::size_t devices = 4;
  std::size_t prefill_devices = 0; ///< aegaeon and fcfs: prefill-only devices; 0: colocated
  std::size_t device_bytes = 0;    ///< 0: the backend's default
  std::size_t max_batch_tokens = 1024, max_seqs = 32;
};

/// A pool of `shape` serving `models` under `policy` (one of `pool_policy_names`): every device
/// an instance (dedicated: one per model, while devices last), routed and scheduled as the
/// policy does. "muxserve": its instances' models are placed afterwards by `place_muxserve`
/// (muxserve_pool.hpp), which needs the workload's rates.
actors::pool_spec policy_pool(const pool_shape& shape, const std::string& policy,
                              std::vector<actors::model_spec> models);

} // namespace aeg::apps
