#pragma once

#include "actors/topology.hpp"

#include <string>

namespace aeg::apps {

/// What `aegaeon worker` runs.
struct worker_options {
  std::string config;                 ///< the node's topology: its devices, models and instances
  std::string listen = "127.0.0.1:0"; ///< HOST:PORT for front ends; port 0 picks a free one
  std::string cluster_key_file;       ///< the key a front end must present
  std::string name;                   ///< the node's name (default: the host name)
  actors::cluster_tls tls;            ///< TLS to front ends (empty: plain TCP)
};

/// `aegaeon worker`: starts the node's devices, host model cache and instances, publishes them
/// to front ends that present the cluster key, and runs until SIGINT or SIGTERM. Returns the
/// exit status: 2 for a setup refused before anything starts, 1 for a failure while starting.
int run_worker(const worker_options& options);

} // namespace aeg::apps
