#pragma once

// Nodes over CAF's network layer (its middleman): a worker publishes its node actor on a port,
// a front end joins it with the cluster key and gets the node's instances as remote actors,
// which take the same messages as local ones. CAF's io headers stay in cluster.cpp.

#include "actors/node.hpp"
#include "actors/pool_protocol.hpp"
#include "actors/topology.hpp"
#include "coro/error.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace caf {
class actor_system_config;
}

namespace aeg::actors {

/// The key in the file at `path` (an API key, a cluster key): its first line without the line
/// break. An error says why it cannot be used (unreadable, or no key in it).
result<std::string> read_key_file(const std::string& path);

/// "HOST:PORT" (the host may be a bracketed IPv6 literal) as host and port; port 0 only with
/// `zero_port` (a listener's "pick a free one"). Errors quote the text and show the form.
result<std::pair<std::string, std::uint16_t>> parse_address(const std::string& text,
                                                            bool zero_port = false);

/// How long a node may stay silent (no heartbeat, sent every second) before it counts as lost.
inline constexpr std::chrono::seconds peer_timeout{5};

/// Checks `tls` before an actor system starts with it (CAF would only fail at the first
/// connection): all three files or none, each readable PEM, the key the certificate's, and the
/// certificate signed by the CA. The error names the file and what is wrong with it.
result<void> check_tls(const cluster_tls& tls);

/// Loads the network layer into `cfg` and names the messages that cross nodes (wire.hpp);
/// peers silent for `peer_timeout` are dropped. With `tls` enabled (checked by `check_tls`),
/// nodes publish and join over TLS only.
void enable_network(caf::actor_system_config& cfg, const cluster_tls& tls = {});

/// Publishes `node` on `host`:`port` (0: a free port), over TLS when the system was started
/// with it; the port it listens on.
result<std::uint16_t> publish_node(caf::actor_system& sys, const node_actor& node,
                                   const std::string& host, std::uint16_t port);

/// Connects to the node at `host`:`port` (over TLS when the system was started with it) and
/// joins it with `key`: its instances, as remote actors. For start-up code: it blocks the calling
/// thread, never an actor.
result<node_info> join_node(caf::actor_system& sys, const std::string& host, std::uint16_t port,
                            const std::string& key,
                            std::chrono::seconds timeout = std::chrono::seconds(10));

/// The first wait before joining a lost node again, and the longest (the wait doubles).
inline constexpr std::chrono::seconds first_rejoin{1}, longest_rejoin{30};

/// Spawns the watcher of a node a front end joined (`info`, at `host`:`port`): it monitors the
/// node's instances and, once all are gone (the worker died or was unreachable), joins the node
/// again with `key`, after `first_rejoin` and then twice as long each time up to
/// `longest_rejoin`, and adds its instances that serve any of `models` to `proxy`.
/// `log` hears of losses, failed attempts and joins.
caf::actor watch_node(caf::actor_system& sys, const proxy_actor& proxy, const std::string& host,
                      std::uint16_t port, const node_info& info, const std::string& key,
                      std::vector<std::string> models, std::function<void(const std::string&)> log);

} // namespace aeg::actors
