#include "apps/aegaeon/worker.hpp"

#include "actors/cluster.hpp"
#include "actors/pool.hpp"
#include "actors/runtime_config.hpp"
#include "apps/aegaeon/serve.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>
#include <climits>
#include <fmt/core.h>

#include <csignal>
#include <unistd.h>

namespace aeg::apps {

namespace {

std::string host_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  return gethostname(buf, sizeof buf) == 0 ? std::string(buf) : std::string("worker");
}

} // namespace

int run_worker(const worker_options& o) {
  auto where = actors::parse_address(o.listen, true);
  if (!where) {
    fmt::print(stderr, "aegaeon worker: --listen: {}\n", where.error().message);
    return 2;
  }
  auto key = read_key_file(o.cluster_key_file);
  if (!key) {
    fmt::print(stderr, "aegaeon worker: --cluster-key-file {}: {}\n", o.cluster_key_file,
               key.error().message);
    return 2;
  }
  if (auto ok = actors::check_tls(o.tls); !ok) {
    fmt::print(stderr, "aegaeon worker: --tls-*: {}\n", ok.error().message);
    return 2;
  }
  auto spec = actors::load_topology(o.config);
  if (!spec) {
    fmt::print(stderr, "aegaeon worker: {}\n", spec.error().to_string());
    return 2;
  }
  // SIGINT and SIGTERM are taken by the main thread's sigwait below: blocked before any other
  // thread starts, so that every thread inherits the mask.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  caf::actor_system_config cfg;
  actors::configure_runtime(cfg);
  actors::enable_network(cfg, o.tls);
  caf::actor_system sys{cfg};
  auto pool = actors::pool::start(sys, *spec);
  if (!pool) {
    fmt::print(stderr, "aegaeon worker: {}\n", pool.error().to_string());
    return 1;
  }
  if (auto ok = (*pool)->wait_started(sys); !ok) {
    fmt::print(stderr, "aegaeon worker: {}\n", ok.error().to_string());
    return 1;
  }
  actors::node_info info;
  info.node = o.name.empty() ? host_name() : o.name;
  for (std::size_t i = 0; i < (*pool)->instances().size(); ++i) {
    const auto& is = spec->instances[i];
    auto models = is.models;
    if (models.empty()) // every model of the node
      for (const auto& m : spec->models)
        models.push_back(m.name);
    info.instances.push_back({(*pool)->instance_names()[i], to_string(is.role), std::move(models),
                              (*pool)->instances()[i]});
  }
  const auto node = actors::spawn_node(sys, info, *key);
  auto port = actors::publish_node(sys, node, where->first, where->second);
  if (!port) {
    fmt::print(stderr, "aegaeon worker: {}\n", port.error().message);
    return 1;
  }
  fmt::print(stderr, "aegaeon worker: node {} with {} instance(s), listening on {}:{}{}\n",
             info.node, info.instances.size(), where->first, *port,
             o.tls.enabled() ? " (TLS)" : "");
  int sig = 0;
  sigwait(&stop, &sig);
  fmt::print(stderr, "aegaeon worker: stopping on {}\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
  pool->reset(); // the instances stop before the actor system does
  return 0;
}

} // namespace aeg::apps
