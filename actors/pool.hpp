#pragma once

#include "actors/instance.hpp"
#include "actors/proxy.hpp"
#include "actors/topology.hpp"
#include "coro/error.hpp"
#include "models/model_cache.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <cstddef>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace aeg::actors {

/// The options an instance of `spec` runs with: its sizes and, when it decodes, the switch
/// policy the pool's policy names.
instance_options instance_options_for(const pool_spec& spec, const instance_spec& is);

/// What each device of `spec` gives its instances when they start: the weights, the step
/// buffers, and the KV pools (`kv_mib` where given, else room for one `tokens`-token context of
/// the largest KV shape, at least one slab). Models are planned from their sources, not loaded.
result<std::vector<models::device_plan>> device_memory_needed(const pool_spec& spec,
                                                              const models::compute_format& format,
                                                              std::size_t tokens = 0);

/// Checks that every device holds what `device_memory_needed` says its instances take;
/// `capacities[i]` stands for device i's `memory_bytes` (a device with neither is not checked).
/// The error names the device, the memory it needs in its parts, and what to change.
result<void> check_device_memory(const pool_spec& spec, const models::compute_format& format,
                                 std::span<const std::size_t> capacities = {});

/// A running pool: its devices, the host model cache, the instances and the proxy, spawned in
/// `sys`. Requests go to `proxy()` as `(submit_atom, generation_request)`.
class pool {
public:
  /// Makes the devices, loads every model into the host cache (progress per model), spawns the
  /// instances and the proxy. Errors say which device, model or instance could not be made.
  /// With `spec.nodes` (a front end): joins each worker with the cluster key instead and
  /// spawns the proxy over their colocated instances, which it monitors like its own.
  /// `log` hears of a front end's nodes lost and joined again.
  static result<std::unique_ptr<pool>>
  start(caf::actor_system& sys, const pool_spec& spec,
        const std::function<void(const std::string& model, std::size_t done, std::size_t total)>&
            progress = {},
        const std::function<void(const std::string&)>& log = {});
  ~pool();
  pool(const pool&) = delete;
  /// Waits until every instance has made its engine (device memory, KV pools, buffers), or says
  /// which one could not and why ("the model and its KV do not fit ..."). For start-up code
  /// (`main`, tests): it blocks the calling thread, never an actor.
  result<void> wait_started(caf::actor_system& sys,
                            std::chrono::seconds timeout = std::chrono::seconds(60)) const;
  pool& operator=(const pool&) = delete;

  const proxy_actor& proxy() const noexcept { return proxy_; }
  const std::vector<instance_actor>& instances() const noexcept { return instances_; }
  const std::vector<std::string>& instance_names() const noexcept { return names_; }
  /// The host model cache (a pool with devices; a front end has none).
  const models::model_cache& cache() const noexcept { return *cache_; }
  /// A served model's hyperparameters (from its source, on a front end too).
  const models::llama_config& config_of(const std::string& model) const {
    return configs_.at(model);
  }
  /// Whether the instances are workers' (a front end's pool), which it does not stop.
  bool remote() const noexcept { return remote_; }
  const pool_spec& spec() const noexcept { return spec_; }

private:
  pool() = default;
  /// `start` of a topology with nodes: the proxy here, the instances the workers'.
  static result<std::unique_ptr<pool>> join(caf::actor_system& sys, const pool_spec& spec,
                                            const std::function<void(const std::string&)>& log);
  std::vector<caf::actor> watchers_; ///< a front end's, one per node
  caf::actor desk_; ///< hands prefilled requests to request actors on other nodes (a worker's)
  std::map<std::string, models::llama_config> configs_;
  bool remote_ = false;
  pool_spec spec_;
  std::vector<std::shared_ptr<gpu::device>> devices_;
  std::unique_ptr<models::model_cache> cache_;
  std::shared_ptr<gpu::kv_pool> host_kv_;
  std::vector<instance_actor> instances_;
  std::vector<std::string> names_;
  proxy_actor proxy_;
};

} // namespace aeg::actors
