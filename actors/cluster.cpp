#include "actors/cluster.hpp"

#include "actors/wire.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <cerrno>
#include <cstdlib>
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

result<std::pair<std::string, std::uint16_t>> parse_address(const std::string& text,
                                                            bool zero_port) {
  const auto bad = [&] {
    return fail(errc::invalid_argument, "'" + text + "' is not HOST:PORT (e.g. 10.0.0.2:7000" +
                                            (zero_port ? "; port 0 picks a free one)" : ")"));
  };
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return bad();
  auto host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const auto port = text.substr(colon + 1);
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < (zero_port ? 0 : 1) || p > 65535)
    return bad();
  return std::pair{host, static_cast<std::uint16_t>(p)};
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
                 // It answered: a refusal (a wrong key) is a setting to fix, not an outage.
                 out = fail(e.category() == caf::atom("system") ? errc::unavailable
                                                                : errc::invalid_argument,
                            "the node at " + where + " refused to join: " + sys.render(e));
               });
  return out;
}

namespace {

using rejoin_atom = caf::atom_constant<caf::atom("rejoin")>;

struct watch_state {
  std::string host;
  std::uint16_t port = 0;
  std::string key, node;
  std::vector<std::string> models;
  std::function<void(const std::string&)> log;
  std::set<caf::actor_addr> live; ///< the node's instances the proxy uses
  caf::timespan wait{first_rejoin};
};

caf::behavior watcher(caf::stateful_actor<watch_state>* self, proxy_actor proxy, node_info info,
                      watch_state init) {
  self->state = std::move(init);
  auto say = [self](const std::string& line) {
    if (self->state.log)
      self->state.log(line);
  };
  // Monitors the node's instances that serve the front end's models; with `add`, gives them to
  // the proxy too. Returns how many.
  auto take = [self, proxy](node_info& joined, bool add) {
    std::size_t n = 0;
    for (auto& inst : joined.instances) {
      std::erase_if(inst.models, [&](const std::string& m) {
        return std::find(self->state.models.begin(), self->state.models.end(), m) ==
               self->state.models.end();
      });
      if (inst.models.empty() || inst.role != to_string(instance_role::colocated))
        continue;
      self->monitor(inst.handle);
      self->state.live.insert(inst.handle.address());
      if (add)
        self->send(proxy, add_member_atom::value,
                   pool_member{inst.handle, instance_role::colocated, inst.models,
                               joined.node + "/" + inst.name, 0});
      ++n;
    }
    return n;
  };
  auto retry = [self, say](const std::string& why) {
    say("node " + self->state.node + " (" + self->state.host + ":" +
        std::to_string(self->state.port) + "): " + why + "; trying again in " +
        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(self->state.wait).count()) +
        " s");
    self->delayed_send(self, self->state.wait, rejoin_atom::value);
    self->state.wait = std::min<caf::timespan>(self->state.wait * 2, longest_rejoin);
  };
  if (take(info, false) == 0) // not reachable when the front end started
    retry("not joined");
  self->set_down_handler([self, say, retry](caf::down_msg& d) {
    if (self->state.live.erase(d.source) == 0 || !self->state.live.empty())
      return;
    say("lost node " + self->state.node + ": its requests go to the other instances");
    self->state.wait = first_rejoin;
    retry("not joined");
  });
  return {[self, say, retry, take](rejoin_atom) {
    auto mm = self->system().middleman().actor_handle();
    self->request(mm, caf::infinite, caf::connect_atom::value, self->state.host, self->state.port)
        .then(
            [self, say, retry, take](const caf::node_id&, caf::strong_actor_ptr& ptr,
                                     const std::set<std::string>&) {
              if (!ptr) {
                retry("nothing is published there");
                return;
              }
              self->request(caf::actor_cast<node_actor>(ptr), std::chrono::seconds(10),
                            join_atom::value, self->state.key)
                  .then(
                      [self, say, take](node_info& joined) {
                        self->state.node = joined.node;
                        const auto n = take(joined, true);
                        say("joined node " + joined.node + " again: " + std::to_string(n) +
                            " instance(s)");
                      },
                      [self, retry](caf::error& e) { retry(self->system().render(e)); });
            },
            [self, retry](caf::error& e) { retry(self->system().render(e)); });
  }};
}

} // namespace

caf::actor watch_node(caf::actor_system& sys, const proxy_actor& proxy, const std::string& host,
                      std::uint16_t port, const node_info& info, const std::string& key,
                      std::vector<std::string> models,
                      std::function<void(const std::string&)> log) {
  watch_state init;
  init.host = host;
  init.port = port;
  init.key = key;
  init.node = info.node;
  init.models = std::move(models);
  init.log = std::move(log);
  return sys.spawn(watcher, proxy, info, std::move(init));
}

} // namespace aeg::actors
