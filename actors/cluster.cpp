#include "actors/cluster.hpp"

#include "actors/wire.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace aeg::actors {

result<std::string> read_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return fail(errc::not_found, std::string("cannot read it (") + std::strerror(errno) + ")");
  std::string key;
  std::getline(in, key);
  while (!key.empty() && (key.back() == '\r' || key.back() == ' ' || key.back() == '\t'))
    key.pop_back();
  if (key.find_first_not_of(" \t") == std::string::npos)
    return fail(errc::invalid_argument, "its first line holds no key");
  return key;
}

void enable_network(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  // Nodes greet each other every second; one not heard from for `peer_timeout` is dropped, so
  // that a hung or unreachable worker is noticed (its actors' monitors fire) like a dead one.
  cfg.set("middleman.heartbeat-interval", caf::timespan{std::chrono::seconds(1)});
  cfg.set("middleman.connection-timeout", caf::timespan{peer_timeout});
  add_message_types(cfg);
  cfg.add_message_type<node_info>("aeg::node_info");
  cfg.add_message_type<node_actor>("aeg::node_actor");
}

result<std::uint16_t> publish_node(caf::actor_system& sys, const node_actor& node,
                                   const std::string& host, std::uint16_t port) {
  auto bound = sys.middleman().publish(node, port, host.c_str(), true);
  if (!bound)
    return fail(errc::unavailable, "cannot listen on " + host + ":" + std::to_string(port) + ": " +
                                       sys.render(bound.error()));
  return *bound;
}

result<node_info> join_node(caf::actor_system& sys, const std::string& host, std::uint16_t port,
                            const std::string& key, std::chrono::seconds timeout) {
  const auto where = host + ":" + std::to_string(port);
  auto node = sys.middleman().remote_actor<node_actor>(host, port);
  if (!node)
    return fail(errc::unavailable,
                "cannot reach the node at " + where + ": " + sys.render(node.error()));
  caf::scoped_actor self{sys};
  result<node_info> out = fail(errc::timeout, "the node at " + where + " did not answer");
  self->request(*node, timeout, join_atom::value, key)
      .receive([&](node_info& info) { out = std::move(info); },
               [&](caf::error& e) {
                 out = fail(errc::unavailable,
                            "the node at " + where + " refused to join: " + sys.render(e));
               });
  return out;
}

} // namespace aeg::actors
