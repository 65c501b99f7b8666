#pragma once

// A worker process's front door: the instances of its node, given to a front end that presents
// the cluster's key. Plain messages; the network layer that carries them is actors/cluster.hpp.

#include "actors/instance.hpp"

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <string>
#include <vector>

namespace aeg::actors {

/// A front end asks a node for its instances: `(join_atom, cluster key)`.
using join_atom = caf::atom_constant<caf::atom("join")>;

/// One instance a node runs.
struct node_instance {
  std::string name;                ///< as the node's topology names it
  std::string role;                ///< "colocated", "prefill" or "decode"
  std::vector<std::string> models; ///< the models it serves
  instance_actor handle;
};

/// What a node tells a front end that joins it.
struct node_info {
  std::string node; ///< the node's name
  std::vector<node_instance> instances;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_instance& x) {
  return f(caf::meta::type_name("node_instance"), x.name, x.role, x.models, x.handle);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("node_info"), x.node, x.instances);
}

/// `(join_atom, key)` answers the node's `node_info` when `key` is the cluster's, and an error
/// ("wrong cluster key") otherwise; the instances are reachable only through their handles.
using node_actor = caf::typed_actor<caf::replies_to<join_atom, std::string>::with<node_info>>;

/// Spawns a node's front door for `info`, guarded by `cluster_key`.
node_actor spawn_node(caf::actor_system& sys, node_info info, std::string cluster_key);

} // namespace aeg::actors
