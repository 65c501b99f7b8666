#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace aeg::sched {

/// A model to place, with what MuxServe's placement weighs it by.
struct placement_model {
  std::string name;
  std::size_t weight_bytes = 0;
  double rate = 0; ///< requests per second it is expected to get
};

/// Where MuxServe put each model: `devices[d]` the models of device d (at most two), in the
/// order they were placed; `unplaced` the models no device could take, in the input's order.
struct muxserve_placement {
  std::vector<std::vector<std::string>> devices;
  std::vector<std::string> unplaced;
};

/// MuxServe's greedy placement: models in decreasing rate × size (ties in the input's order),
/// each onto the device with the most memory left where its weights fit beside at most one
/// other model (ties to the lowest index); a device keeps `kv_reserve_bytes` of its
/// `device_bytes` free of weights for KV and activations. Models that fit nowhere are unplaced.
/// Pure: the same inputs give the same placement.
muxserve_placement place_muxserve(const std::vector<placement_model>& models, std::size_t devices,
                                  std::size_t device_bytes, std::size_t kv_reserve_bytes);

} // namespace aeg::sched
