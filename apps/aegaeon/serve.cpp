#include "apps/aegaeon/serve.hpp"

#include "actors/cluster.hpp"
#include "actors/runtime_config.hpp"
#include "apps/server/served_models.hpp"
#include "apps/server/server.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <fmt/chrono.h>
#include <fmt/core.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace aeg::apps {

namespace {

void log_line(const std::string& line) {
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&now, &tm);
  fmt::print(stderr, "[{:%H:%M:%S}] {}\n", tm, line);
}

} // namespace

int run_serve(server::serve_options o) {
  const bool tty = isatty(STDERR_FILENO) != 0;
  std::string current;
  int last_percent = -1;
  o.progress = [&](const std::string& model, std::size_t done, std::size_t total) {
    const int percent = static_cast<int>(100.0 * static_cast<double>(done) /
                                         static_cast<double>(std::max<std::size_t>(total, 1)));
    if (model != current) {
      current = model;
      last_percent = -1;
    }
    if (percent == last_percent)
      return;
    last_percent = percent;
    if (tty)
      fmt::print(stderr, "\rloading {}: {:3d}% of {} MiB{}", model, percent, total >> 20,
                 percent == 100 ? "\n" : "");
    else if (percent == 100)
      log_line(fmt::format("loaded {} ({} MiB)", model, total >> 20));
  };
  o.log = log_line;

  // The default models directory is relative: run elsewhere, it is simply not there.
  std::error_code ec;
  if (o.config.empty() && std::filesystem::path(o.models_dir).is_relative() &&
      !std::filesystem::exists(o.models_dir, ec)) {
    const auto here = std::filesystem::current_path(ec);
    fmt::print(stderr,
               "aegaeon serve: no models directory '{}' here; it is relative to the current "
               "directory ({}): run from the project root or give --models-dir (or --config)\n",
               o.models_dir, ec ? std::string(".") : here.string());
    return 2;
  }
  // Mistakes in the setup (the topology, the models, their memory) are said before any thread
  // starts, as bad usage.
  if (auto ok = server::server::check(o); !ok) {
    fmt::print(stderr, "aegaeon serve: {}\n", ok.error().to_string());
    return 2;
  }
  caf::actor_system_config cfg;
  actors::configure_runtime(cfg);
  // A front end reaches its workers through CAF's network layer; a pool of its own needs none.
  if (auto spec = server::spec_of(o); spec && !spec->nodes.empty()) {
    if (auto ok = actors::check_tls(spec->tls); !ok) {
      fmt::print(stderr, "aegaeon serve: cluster_tls: {}\n", ok.error().message);
      return 2;
    }
    actors::enable_network(cfg, spec->tls);
  }
  caf::actor_system sys{cfg};
  auto s = server::server::create(sys, o);
  if (!s) {
    fmt::print(stderr, "aegaeon serve: {}\n", s.error().to_string());
    return 1;
  }
  const int rc = (*s)->run();
  s->reset(); // the pool's actors stop before the actor system does
  return rc;
}

} // namespace aeg::apps
