#include "apps/aegaeon/demo.hpp"

#include "actors/coro_actor.hpp"
#include "actors/runtime_config.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/registry.hpp"
#include "kernels/axpy.hpp"

#include <caf/all.hpp>
#include <fmt/core.h>

#include <chrono>
#include <memory>
#include <vector>

namespace aeg::apps {

namespace {

using start_atom = caf::atom_constant<caf::atom("start")>;

struct demo_report {
  long events_awaited = 0;
  long ops_enqueued = 0;
  int max_in_flight = 0;
  long wrong_values = 0;
};

// The one actor. Each coroutine owns a slice of device memory and, per step, copies its input to
// the device, runs y += 1·x there, copies y back, records an event and awaits it. While one
// coroutine waits, the actor runs the others: no thread ever blocks on the device.
class interleaver final : public actors::coro_actor {
public:
  interleaver(caf::actor_config& cfg, std::vector<std::shared_ptr<gpu::device>> devices,
              demo_options options)
      : actors::coro_actor(cfg), devices_(std::move(devices)), options_(std::move(options)) {}

  caf::behavior make_behavior() override {
    return with_coroutines([this](start_atom) -> caf::result<caf::message> {
      done_ = make_response_promise();
      for (auto& d : devices_) {
        auto s = d->create_stream();
        if (!s)
          return caf::make_error(caf::sec::runtime_error, s.error().to_string());
        streams_.push_back(std::move(*s));
      }
      remaining_ = options_.num_coroutines;
      for (int i = 0; i < options_.num_coroutines; ++i)
        spawn(work(i));
      return done_;
    });
  }

  void on_exit() override {
    // Let queued device work finish before the coroutine frames that own its memory go.
    streams_.clear();
    actors::coro_actor::on_exit();
  }

private:
  coro::task<void> work(int id) {
    ++in_flight_;
    report_.max_in_flight = std::max(report_.max_in_flight, in_flight_);
    const std::size_t d = static_cast<std::size_t>(id) % devices_.size();
    auto& dev = *devices_[d];
    auto& s = *streams_[d];
    const std::size_t n = options_.elements, bytes = n * sizeof(float);
    auto host = value_or_throw(dev.allocate_pinned(2 * bytes));
    auto mem = value_or_throw(dev.allocate(2 * bytes));
    auto ev = value_or_throw(dev.create_event());
    float* h = host.as<float>();
    float* x = mem.as<float>();
    float* y = x + n;
    for (std::size_t k = 0; k < n; ++k)
      h[k] = 1.0f, h[n + k] = static_cast<float>(id);
    value_or_throw(s.copy(y, h + n, bytes, gpu::copy_kind::host_to_device));
    for (int step = 0; step < options_.steps; ++step) {
      value_or_throw(s.copy(x, h, bytes, gpu::copy_kind::host_to_device));
      value_or_throw(kernels::axpy(s, 1.0f, x, y, n));
      value_or_throw(s.copy(h + n, y, bytes, gpu::copy_kind::device_to_host));
      value_or_throw(s.record(*ev));
      report_.ops_enqueued += 4;
      co_await *ev; // resumes inside this actor, through its mailbox
      ++report_.events_awaited;
    }
    const float expected = static_cast<float>(id + options_.steps);
    for (std::size_t k = 0; k < n; ++k)
      report_.wrong_values += h[n + k] != expected;
    --in_flight_;
    if (--remaining_ == 0)
      done_.deliver(report_.events_awaited, report_.ops_enqueued, report_.max_in_flight,
                    report_.wrong_values);
  }

  std::vector<std::shared_ptr<gpu::device>> devices_;
  std::vector<std::unique_ptr<gpu::stream>> streams_;
  demo_options options_;
  demo_report report_;
  int in_flight_ = 0;
  int remaining_ = 0;
  caf::response_promise done_;
};

} // namespace

int run_demo(const demo_options& options) {
  std::vector<std::shared_ptr<gpu::device>> devices;
  for (int i = 0; i < options.num_devices; ++i) {
    auto d = gpu::make_device({.backend = options.backend, .ordinal = i, .capacity_bytes = 0});
    if (!d) {
      fmt::print(stderr, "aegaeon demo: {}\n", d.error().to_string());
      return 1;
    }
    devices.push_back(*d);
    fmt::print("device {}: {} bytes\n", (*d)->name(), (*d)->capacity_bytes());
  }
  // Every coroutine holds its x and y at once; say so now rather than fail half-way.
  const std::size_t per_coroutine = 2 * options.elements * sizeof(float);
  for (int i = 0; i < options.num_devices; ++i) {
    const auto on_device = static_cast<std::size_t>(
        (options.num_coroutines - i + options.num_devices - 1) / options.num_devices);
    const auto& dev = *devices[static_cast<std::size_t>(i)];
    if (on_device * per_coroutine > dev.free_bytes()) {
      fmt::print(stderr,
                 "aegaeon demo: out of memory: {} coroutines of {} MiB each need {} MiB on {}, "
                 "which has {} MiB free; use fewer --coroutines or --elements, or more "
                 "--devices\n",
                 on_device, per_coroutine >> 20, (on_device * per_coroutine) >> 20, dev.name(),
                 dev.free_bytes() >> 20);
      return 2; // what was asked for cannot fit: bad usage, as for the other commands
    }
  }
  caf::actor_system_config cfg;
  actors::configure_runtime(cfg);
  caf::actor_system sys{cfg};
  auto actor = sys.spawn<interleaver>(devices, options);
  fmt::print("one actor, {} coroutines, {} steps each, {} floats per step\n",
             options.num_coroutines, options.steps, options.elements);

  int rc = 0;
  const auto start = std::chrono::steady_clock::now();
  caf::scoped_actor self{sys}; // main waits here; the actor itself never blocks
  // The reply, or the actor's exit: a coroutine that fails ends the actor without an answer,
  // and waiting on the request alone would then never return.
  self->monitor(actor);
  self->send(actor, start_atom::value);
  self->receive(
      [&](long events, long ops, int max_in_flight, long wrong) {
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        fmt::print("awaited {} device events ({} ops enqueued) in {:.3f} s: {:.0f} events/s\n",
                   events, ops, secs, events / secs);
        fmt::print("coroutines in flight at once: up to {}\n", max_in_flight);
        if (wrong != 0) {
          fmt::print(stderr, "aegaeon demo: {} values were wrong\n", wrong);
          rc = 1;
        } else {
          fmt::print("every value checked: correct\n");
        }
      },
      [&](caf::error& e) {
        fmt::print(stderr, "aegaeon demo: {}\n", sys.render(e));
        rc = 1;
      },
      [&](caf::down_msg& d) {
        fmt::print(stderr, "aegaeon demo: the actor stopped: {}\n", sys.render(d.reason));
        rc = 1;
      });
  self->send_exit(actor, caf::exit_reason::user_shutdown);
  return rc;
}

} // namespace aeg::apps
