#include "apps/aegaeon/demo.hpp"
#include "gpu/registry.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

int main(int argc, char** argv) {
  CLI::App app{"Aegaeon-C++: many LLMs on a shared GPU pool, scheduled at token granularity"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "aegaeon 0.1.0");

  aeg::apps::demo_options demo;
  auto* demo_cmd = app.add_subcommand(
      "demo",
      "One actor interleaves many coroutines that enqueue device work and await its events");
  demo_cmd->add_option("--devices", demo.num_devices, "Devices to spread the work over")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  demo_cmd->add_option("--coroutines", demo.num_coroutines, "Coroutines the actor interleaves")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  demo_cmd->add_option("--steps", demo.steps, "Device round trips per coroutine")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  demo_cmd->add_option("--elements", demo.elements, "Floats each coroutine moves per step")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24))
      ->capture_default_str();
  demo_cmd->add_option("--backend", demo.backend, "Device backend: cpu or cuda")
      ->check(CLI::IsMember(aeg::gpu::built_backends()))
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  if (demo_cmd->parsed())
    return aeg::apps::run_demo(demo);
  return 0;
}
