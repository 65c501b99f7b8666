// Coroutine actors on CAF's real work-stealing scheduler, awaiting device events from CPU streams.

#include "actors/ask.hpp"
#include "actors/coro_actor.hpp"
#include "actors/runtime_config.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/registry.hpp"
#include "kernels/axpy.hpp"

#include <caf/all.hpp>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace aeg::actors {
namespace {

using run_atom = caf::atom_constant<caf::atom("run")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;

// Runs `n` coroutines that each copy a vector to one of two devices, scale-add it there, copy it
// back, and await the device event; replies with the sum of all results once every one is done.
class device_worker final : public coro_actor {
public:
  device_worker(caf::actor_config& cfg, std::vector<std::shared_ptr<gpu::device>> devices,
                caf::actor peer)
      : coro_actor(cfg), devices_(std::move(devices)), peer_(std::move(peer)) {}

  caf::behavior make_behavior() override {
    return with_coroutines(
        [this](run_atom, int n) -> caf::result<double> {
          auto rp = make_response_promise<double>();
          spawn(run_all(n, rp));
          return rp;
        },
        [this](ping_atom, int n) -> caf::result<int> {
          auto rp = make_response_promise<int>();
          spawn(ping_peer(n, rp));
          return rp;
        });
  }

private:
  coro::task<void> run_all(int n, caf::response_promise rp) {
    remaining_ = n;
    total_ = 0;
    done_ = rp;
    for (int i = 0; i < n; ++i)
      spawn(one(i));
    co_return;
  }

  coro::task<void> one(int i) {
    total_ += co_await scale_on_device(i);
    if (--remaining_ == 0) // after the device memory of this coroutine went back
      done_.deliver(total_);
  }

  coro::task<double> scale_on_device(int i) {
    auto& dev = devices_[i % devices_.size()];
    constexpr std::size_t n = 256;
    auto host = value_or_throw(dev->allocate_pinned(2 * n * sizeof(float)));
    auto dmem = value_or_throw(dev->allocate(2 * n * sizeof(float)));
    auto s = value_or_throw(dev->create_stream());
    auto ev = value_or_throw(dev->create_event());
    float* h = host.as<float>();
    for (std::size_t k = 0; k < n; ++k) {
      h[k] = 1.0f;         // x
      h[n + k] = float(i); // y
    }
    float* d = dmem.as<float>();
    value_or_throw(s->copy(d, h, 2 * n * sizeof(float), gpu::copy_kind::host_to_device));
    value_or_throw(kernels::axpy(*s, 2.0f, d, d + n, n));
    value_or_throw(s->copy(h, d + n, n * sizeof(float), gpu::copy_kind::device_to_host));
    value_or_throw(s->record(*ev));
    co_await *ev; // resumes inside this actor once the stream got there
    double sum = 0;
    for (std::size_t k = 0; k < n; ++k)
      sum += h[k];
    co_return sum;
  }

  // The pattern GCC 12 miscompiles: a temporary with a non-trivial destructor (caf::actor)
  // inside the co_await expression. Built with clang it must be destroyed exactly once.
  coro::task<void> ping_peer(int n, caf::response_promise rp) {
    int sum = 0;
    for (int i = 0; i < n; ++i) {
      auto r = co_await ask<int>(this, caf::actor{peer_}, std::chrono::seconds(30), i);
      sum += value_or_throw(std::move(r));
    }
    rp.deliver(sum);
  }

  std::vector<std::shared_ptr<gpu::device>> devices_;
  caf::actor peer_;
  int remaining_ = 0;
  double total_ = 0;
  caf::response_promise done_;
};

caf::behavior echo(caf::event_based_actor*) {
  return {[](int x) { return x; }};
}

class RealThreads : public ::testing::Test {
protected:
  RealThreads() {
    cfg_.set("scheduler.max-threads", 2);
    configure_runtime(cfg_); // as our processes run CAF
    sys_ = std::make_unique<caf::actor_system>(cfg_);
  }
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
};

TEST_F(RealThreads, ManyCoroutinesInterleaveDeviceWorkOnTwoDevices) {
  std::vector<std::shared_ptr<gpu::device>> devs;
  for (int d = 0; d < 2; ++d)
    devs.push_back(*gpu::make_device({.backend = "cpu", .ordinal = d, .capacity_bytes = 64 << 20}));
  auto w = sys_->spawn<device_worker>(devs, caf::actor{});
  caf::scoped_actor self{*sys_};
  constexpr int n = 64;
  double expected = 0;
  for (int i = 0; i < n; ++i)
    expected += 256.0 * (i + 2.0);
  self->request(w, std::chrono::seconds(60), run_atom::value, n)
      .receive([&](double total) { EXPECT_DOUBLE_EQ(total, expected); },
               [&](caf::error& e) { FAIL() << sys_->render(e); });
  self->send_exit(w, caf::exit_reason::user_shutdown);
  for (auto& d : devs)
    EXPECT_EQ(d->used_bytes(), 0u) << "every coroutine's device memory is freed";
}

TEST_F(RealThreads, TemporaryActorHandlesInCoAwaitExpressionsAreDestroyedOnce) {
  auto peer = sys_->spawn(echo);
  auto w = sys_->spawn<device_worker>(std::vector<std::shared_ptr<gpu::device>>{}, peer);
  caf::scoped_actor self{*sys_};
  self->request(w, std::chrono::seconds(60), ping_atom::value, 2000)
      .receive([&](int sum) { EXPECT_EQ(sum, 1999 * 2000 / 2); },
               [&](caf::error& e) { FAIL() << sys_->render(e); });
  self->send_exit(w, caf::exit_reason::user_shutdown);
  self->send_exit(peer, caf::exit_reason::user_shutdown);
}

TEST(RuntimeConfig, IdleWorkersSkipCafsFiftyMicrosecondPolling) {
  // The fixtures above run on this configuration; this holds it to what it promises.
  caf::actor_system_config cfg;
  configure_runtime(cfg);
  EXPECT_EQ(caf::get_or(cfg, "work-stealing.moderate-poll-attempts", std::size_t{500}), 0u);
  EXPECT_EQ(caf::get_or(cfg, "logger.verbosity", caf::atom("trace")), caf::atom("quiet"));
}

} // namespace
} // namespace aeg::actors
