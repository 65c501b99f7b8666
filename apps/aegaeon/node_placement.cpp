#include "apps/aegaeon/node_placement.hpp"

#include "apps/aegaeon/cli_number.hpp"
#include "apps/aegaeon/muxserve_pool.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace aeg::apps {

namespace {

// Each node's devices, in the pool's order.
std::vector<std::vector<std::size_t>>
devices_by_node(std::size_t devices, std::size_t prefill_devices, std::size_t nodes) {
  std::vector<std::vector<std::size_t>> by_node(nodes);
  for (std::size_t i = 0; i < devices; ++i)
    by_node[node_of_device(i, devices, prefill_devices, nodes)].push_back(i);
  return by_node;
}

// The index in `spec.devices` of `is`'s device.
std::size_t device_index(const actors::pool_spec& spec, const actors::instance_spec& is) {
  std::size_t d = 0;
  while (d < spec.devices.size() && spec.devices[d].name != is.device)
    ++d;
  return d;
}

// Dedicated's one model per device, partitioned: node k's devices take node k's models in order.
void partition_dedicated(actors::pool_spec& spec, std::size_t nodes) {
  if (spec.instances.empty())
    return;
  const actors::instance_spec shape = spec.instances.front();
  const auto by_node = devices_by_node(spec.devices.size(), 0, nodes);
  std::vector<actors::instance_spec> instances;
  for (std::size_t k = 0; k < nodes; ++k) {
    const auto models = partition_of(spec.models, k, nodes);
    for (std::size_t j = 0; j < by_node[k].size() && j < models.size(); ++j) {
      auto is = shape;
      is.device = spec.devices[by_node[k][j]].name;
      is.models = {models[j]};
      instances.push_back(std::move(is));
    }
  }
  spec.instances = std::move(instances); // in device order: a node's devices are a block
}

} // namespace

result<node_placement> parse_node_placement(const std::string& name) {
  if (name == "pooled")
    return node_placement::pooled;
  if (name == "partitioned")
    return node_placement::partitioned;
  return fail(errc::invalid_argument, "--placement: '" + name +
                                          "': use pooled (every model on every node) or "
                                          "partitioned (model i on node i mod --nodes)");
}

result<void> check_node_split(std::size_t devices, std::size_t prefill_devices, std::size_t nodes) {
  if (nodes == 0)
    return fail(errc::invalid_argument, "--nodes: give at least 1");
  const std::size_t decode = devices - std::min(devices, prefill_devices);
  if (devices % nodes == 0 && prefill_devices % nodes == 0 && decode / nodes > 0)
    return {};
  // What would split: node counts that divide both, and prefill counts that divide by `nodes`.
  std::vector<std::string> counts, prefills;
  for (std::size_t n = 1; n <= devices; ++n)
    if (devices % n == 0 && prefill_devices % n == 0 && decode / n > 0)
      counts.push_back(std::to_string(n));
  if (devices % nodes == 0)
    for (std::size_t p = nodes; p + nodes <= devices; p += nodes)
      prefills.push_back(std::to_string(p));
  std::string what = prefill_devices > 0 ? fmt::format("{} devices ({} prefill, {} decode)",
                                                       devices, prefill_devices, decode)
                                         : fmt::format("{} devices", devices);
  std::string msg = fmt::format("--nodes {}: {} do not split evenly into {} nodes (each node "
                                "takes the same number of {}); use --nodes {}",
                                nodes, what, nodes,
                                prefill_devices > 0 ? "prefill and of decode devices" : "devices",
                                counts.empty() ? "1" : fmt::format("{}", fmt::join(counts, ", ")));
  if (prefill_devices > 0 && !prefills.empty())
    msg += fmt::format(", or --prefill-devices {} (or 0 for colocated instances)",
                       fmt::join(prefills, ", "));
  if (devices % nodes != 0)
    msg += fmt::format(", or --devices a multiple of {}", nodes);
  return fail(errc::invalid_argument, msg);
}

std::string node_name(std::size_t k) {
  return "n" + std::to_string(k);
}

std::size_t node_of_device(std::size_t i, std::size_t devices, std::size_t prefill_devices,
                           std::size_t nodes) {
  if (i < prefill_devices)
    return i / (prefill_devices / nodes);
  return (i - prefill_devices) / ((devices - prefill_devices) / nodes);
}

std::vector<std::string> partition_of(const std::vector<actors::model_spec>& models, std::size_t k,
                                      std::size_t nodes) {
  std::vector<std::string> names;
  for (std::size_t i = k; i < models.size(); i += nodes)
    names.push_back(models[i].name);
  return names;
}

void place_on_nodes(actors::pool_spec& spec, std::size_t prefill_devices, const node_split& split) {
  const bool dedicated = std::any_of(spec.instances.begin(), spec.instances.end(),
                                     [](const auto& is) { return !is.models.empty(); });
  if (split.placement == node_placement::partitioned && split.nodes > 1 && dedicated)
    partition_dedicated(spec, split.nodes);
  std::vector<actors::instance_spec> instances;
  for (auto& is : spec.instances) {
    const std::size_t k =
        node_of_device(device_index(spec, is), spec.devices.size(), prefill_devices, split.nodes);
    is.node = node_name(k);
    if (split.placement == node_placement::partitioned && !dedicated) {
      is.models = partition_of(spec.models, k, split.nodes);
      if (is.models.empty())
        continue; // more nodes than models: an empty list would mean every model
    }
    instances.push_back(std::move(is));
  }
  spec.instances = std::move(instances);
}

result<std::vector<std::string>>
place_muxserve_on_nodes(actors::pool_spec& spec, const std::vector<actors::trace_request>& trace,
                        double duration, std::size_t device_bytes, const node_split& split) {
  if (split.placement == node_placement::pooled || split.nodes == 1) {
    auto unplaced = place_muxserve(spec, trace, duration, device_bytes);
    if (unplaced)
      place_on_nodes(spec, 0, split);
    return unplaced;
  }
  const auto by_node = devices_by_node(spec.devices.size(), 0, split.nodes);
  std::vector<actors::instance_spec> instances;
  std::vector<std::string> unplaced;
  for (std::size_t k = 0; k < split.nodes; ++k) {
    // Node k alone: its devices, their instances and its models.
    actors::pool_spec node = spec;
    node.devices.clear();
    node.instances.clear();
    for (const std::size_t d : by_node[k])
      node.devices.push_back(spec.devices[d]);
    for (const auto& is : spec.instances)
      if (node_of_device(device_index(spec, is), spec.devices.size(), 0, split.nodes) == k)
        node.instances.push_back(is);
    const auto mine = partition_of(spec.models, k, split.nodes);
    std::erase_if(node.models, [&](const auto& m) {
      return std::find(mine.begin(), mine.end(), m.name) == mine.end();
    });
    auto left = place_muxserve(node, trace, duration, device_bytes);
    if (!left)
      return left;
    unplaced.insert(unplaced.end(), left->begin(), left->end());
    for (auto& is : node.instances) {
      is.node = node_name(k);
      instances.push_back(std::move(is));
    }
  }
  std::sort(instances.begin(), instances.end(), [&](const auto& a, const auto& b) {
    return device_index(spec, a) < device_index(spec, b);
  });
  spec.instances = std::move(instances);
  return unplaced;
}

void add_node_options(CLI::App& cmd, std::size_t& nodes, std::string& placement) {
  auto* split =
      cmd.add_option("--nodes", nodes,
                     "Machines the devices split into, evenly (each its share of prefill and of "
                     "decode devices): a prefill hands its requests to decode instances of its "
                     "node")
          ->check(number({.lo = 1, .hi = 4096, .integer = true}))
          ->capture_default_str();
  // The market's search tries device counts that would not split evenly.
  if (auto* market = cmd.get_option_no_throw("--market"))
    split->excludes(market);
  cmd.add_option("--placement", placement,
                 "Which node serves a model: pooled (every node every model; a request goes to "
                 "the least loaded instance of any node) or partitioned (model i only on node i "
                 "mod --nodes, as the paper's artifact splits them; dedicated serves the same "
                 "models either way, one per GPU)")
      ->check(CLI::IsMember(node_placement_names))
      ->capture_default_str();
}

} // namespace aeg::apps
