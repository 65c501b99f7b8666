#pragma once

#include "actors/topology.hpp"
#include "actors/trace_request.hpp"
#include "coro/error.hpp"

#include <cstddef>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace aeg::apps {

/// Where a multi-node pool serves each model. `pooled`: every node serves every model and the
/// front end routes a request to the least loaded instance of any node. `partitioned`: model i
/// only on node i mod N, as the paper's artifact splits its models across machines.
enum class node_placement { pooled, partitioned };

/// The placements by name, as `--placement` takes them.
inline const std::vector<std::string> node_placement_names = {"pooled", "partitioned"};

/// `name` ("pooled" or "partitioned") as a placement; `errc::invalid_argument` otherwise.
result<node_placement> parse_node_placement(const std::string& name);

/// How a pool's devices split into nodes: `nodes` machines with the same number of devices each
/// and, where the policy has prefill-only devices, the same number of those.
struct node_split {
  std::size_t nodes = 1;
  node_placement placement = node_placement::pooled;
};

/// Whether `devices` (`prefill_devices` of them prefill-only, 0: colocated) split evenly into
/// `nodes` nodes; the error says which node counts or prefill counts would.
result<void> check_node_split(std::size_t devices, std::size_t prefill_devices, std::size_t nodes);

/// The node label of node `k` ("n0", "n1", ...).
std::string node_name(std::size_t k);

/// The node of device `i` of a pool of `devices` devices, the first `prefill_devices` of them
/// prefill-only (0: colocated): each node takes the same share of the prefill devices and of
/// the others, in order. Requires a split `check_node_split` accepts.
std::size_t node_of_device(std::size_t i, std::size_t devices, std::size_t prefill_devices,
                           std::size_t nodes);

/// The models of `models` node `k` of `nodes` serves when partitioned: model i with i mod
/// nodes == k, in their order.
std::vector<std::string> partition_of(const std::vector<actors::model_spec>& models, std::size_t k,
                                      std::size_t nodes);

/// Labels `spec`'s instances (one per device, `policy_pool`'s for a policy whose prefill-only
/// devices number `prefill_devices`) with their nodes and, when partitioned, gives node k's
/// instances only node k's models. An instance serving every model serves its node's partition;
/// one already given models (dedicated's one per device) is given its node's in the same order
/// instead, so that dedicated serves the same models either way. A node whose partition is empty
/// (more nodes than models) keeps no instance. MuxServe's pool is placed per node by
/// `place_muxserve_on_nodes` instead. Requires a split `check_node_split` accepts.
void place_on_nodes(actors::pool_spec& spec, std::size_t prefill_devices, const node_split& split);

/// MuxServe's placement (`place_muxserve`) on a pool of several nodes: pooled, over every device
/// with every model (nodes only label the devices); partitioned, on each node's devices with its
/// models alone. `spec` is `policy_pool`'s for "muxserve"; returns the models no device took.
result<std::vector<std::string>>
place_muxserve_on_nodes(actors::pool_spec& spec, const std::vector<actors::trace_request>& trace,
                        double duration, std::size_t device_bytes, const node_split& split);

/// Adds `--nodes` and `--placement` to `simulate`, writing into `nodes` and `placement`; after
/// `--market`, which `--nodes` excludes (its search tries device counts that need not split).
void add_node_options(CLI::App& simulate, std::size_t& nodes, std::string& placement);

} // namespace aeg::apps
