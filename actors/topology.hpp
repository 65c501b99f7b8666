#pragma once

#include "actors/roles.hpp"
#include "coro/error.hpp"
#include "gpu/sim/sim_clock.hpp"
#include "gpu/sim/sim_profile.hpp"
#include "models/model_cache.hpp"

#include <cstddef>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

// What a pool is made of, as a topology file (JSON, docs/operations.md) describes it.

namespace aeg::actors {

/// A device of a pool.
struct device_spec {
  std::string name;
  std::string backend = "cpu";
  int ordinal = 0;
  std::size_t memory_bytes = 0; ///< 0: the backend's default
};

/// An instance: a device, a role, the models it may serve.
struct instance_spec {
  std::string device;
  instance_role role = instance_role::colocated;
  std::vector<std::string> models; ///< empty: every model of the pool
  std::size_t kv_bytes = 0;        ///< 0: what its device has left
  std::size_t weight_bytes = 0;    ///< 0: room for two models when there is
  std::size_t max_batch_tokens = 512;
  std::size_t max_seqs = 64;
  /// The node (machine) it stands for, a label: a prefill instance hands its requests only to
  /// decode instances of its own node, whose host pool holds their KV. Empty: one node.
  std::string node;
};

/// A model and what its requests are promised.
struct model_spec {
  std::string name;
  models::model_source source;
  double ttft_seconds = 10;
  double tbt_seconds = 0.1;
  /// The longest prompt a request may bring (0: up to the context); a front end refuses longer.
  std::size_t max_prompt_tokens = 0;
  /// The chat format to render conversations in ("chatml", "llama3", "llama2"); empty: the
  /// one the GGUF's own template is recognised as.
  std::string chat_template;
};

/// How the pool schedules.
struct policy_spec {
  routing route = routing::aegaeon;
  /// The instances' switch policy (`sched::switch_policy_names`); empty: the routing's own,
  /// weighted_round_robin for aegaeon and drain_first for request_level and dedicated.
  std::string decode;
  std::size_t max_group = 8; ///< grouped FCFS; 1: plain FCFS
  double max_quota_seconds = 4;
  std::size_t turn_steps = 16; ///< for "round_robin"
  /// Colocated routing: a model gets another instance only when each of its instances holds more
  /// than `scale_queue` of its requests, and it runs on at most `max_replicas` at once. The
  /// defaults are ServerlessLLM's as the paper's artifact ran it (`QS=4, R=1`).
  std::size_t scale_queue = 4;
  std::size_t max_replicas = 1; ///< 0: no limit
  /// The instances keep a leaving model's weights beside the next (MuxServe's residency).
  bool keep_resident = false;

  /// The switch policy the instances run: `decode`, or the routing's own.
  std::string decode_policy() const {
    if (!decode.empty())
      return decode;
    return route == routing::aegaeon ? "weighted_round_robin" : "drain_first";
  }
};

/// A worker process whose instances a front end uses (`aegaeon worker`).
struct node_spec {
  std::string host;
  std::uint16_t port = 0;
};

/// TLS on the links between nodes (CAF's OpenSSL module). Every node presents its certificate
/// and takes a peer only if `ca` signed the peer's, so only nodes holding a certificate of the
/// cluster's CA can connect, and the cluster key and every message travel encrypted. All three
/// empty: plain TCP, for a trusted network only.
struct cluster_tls {
  std::string certificate; ///< this node's certificate chain (PEM), signed by `ca`
  std::string key;         ///< its private key (PEM, not encrypted)
  std::string ca;          ///< the certificate of the CA that signs every node's (PEM)

  /// Whether any of the three is set (`check_tls` then wants all of them).
  bool enabled() const noexcept { return !certificate.empty() || !key.empty() || !ca.empty(); }
};

/// Everything a pool is made of: what a topology file describes.
struct pool_spec {
  /// A front end's workers: the pool's instances are theirs (no devices or instances here).
  std::vector<node_spec> nodes;
  std::string cluster_key_file; ///< the key the workers were started with
  cluster_tls tls;              ///< TLS to the workers (`cluster_tls` in the file)
  std::vector<device_spec> devices;
  std::vector<instance_spec> instances;
  std::vector<model_spec> models;
  policy_spec policy;
  std::size_t host_cache_bytes = 0; ///< 0: no limit
  std::string shared_dir;           ///< host cache files (empty: private memory)
  std::size_t host_kv_bytes = std::size_t{256} << 20;
  std::size_t slab_bytes = std::size_t{16} << 20;
  std::size_t max_queued = 100000;
  /// Finished requests the proxy keeps in full for `metrics_atom` (totals count all).
  std::size_t keep_finished = std::numeric_limits<std::size_t>::max();

  /// A simulation's: the virtual clock its "sim" devices complete work on and what their work
  /// costs (set by the simulator, never read from a file).
  std::shared_ptr<gpu::sim_clock> sim_clock;
  std::shared_ptr<const gpu::sim_profile> sim_profile;

  /// The names of the models instance `is` serves (all of the pool's when it lists none).
  std::vector<std::string> models_of(const instance_spec& is) const;
};

/// Reads a topology (JSON; see docs/operations.md). Errors point at the field:
/// "instances[1].role: 'prefil' is not a role; choose prefill, decode or colocated".
result<pool_spec> parse_topology(std::string_view json);
/// `parse_topology` of a file.
result<pool_spec> load_topology(const std::string& path);

} // namespace aeg::actors
