// The cost of the three ways one piece of code can hand control to another: a direct call, a
// plain CAF request/response round trip between two actors, and resuming a coroutine through its
// actor's mailbox (what every awaited device event costs). Reported as ratios in
// docs/benchmarks.md.

#include "actors/ask.hpp"
#include "actors/coro_actor.hpp"

#include <benchmark/benchmark.h>
#include <caf/all.hpp>

#include <future>

namespace {

using namespace aeg;

// CAF refuses raw pointers in messages; the benchmark driver waits on this local-only box.
struct done_box {
  std::promise<void>* promise = nullptr;
};

} // namespace

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(done_box)

namespace {

using go_atom = caf::atom_constant<caf::atom("go")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;

constexpr int batch = 1000;

// Owned by main: CAF's actor system must be gone before static destruction begins.
caf::actor_system* benchmark_system = nullptr;

caf::actor_system& system_for_benchmarks() {
  return *benchmark_system;
}

[[gnu::noinline]] int add_one(int x) {
  return x + 1;
}

void BM_DirectCall(benchmark::State& state) {
  int (*volatile fn)(int) = add_one;
  int x = 0;
  for (auto _ : state)
    benchmark::DoNotOptimize(x = fn(x));
}
BENCHMARK(BM_DirectCall);

caf::behavior ponger(caf::event_based_actor*) {
  return {[](ping_atom, int x) { return x + 1; }};
}

// Sends `n` requests one after another, each after the previous reply, then fulfils `done`.
// With a finite timeout CAF also arms a timer per request, as every `actors::ask` does.
caf::behavior pinger(caf::event_based_actor* self, caf::actor peer, bool with_timeout) {
  struct loop {
    static void next(caf::event_based_actor* self, caf::actor peer, bool with_timeout, int left,
                     done_box done) {
      if (left == 0) {
        done.promise->set_value();
        return;
      }
      auto timeout = with_timeout ? caf::duration{std::chrono::seconds(10)} : caf::infinite;
      self->request(peer, timeout, ping_atom::value, left).then([=](int) {
        next(self, peer, with_timeout, left - 1, done);
      });
    }
  };
  return {[=](go_atom, int n, done_box done) { loop::next(self, peer, with_timeout, n, done); }};
}

void run_pinger(benchmark::State& state, bool with_timeout) {
  auto& sys = system_for_benchmarks();
  auto pong = sys.spawn(ponger);
  auto ping = sys.spawn(pinger, pong, with_timeout);
  while (state.KeepRunningBatch(batch)) {
    std::promise<void> done;
    caf::anon_send(ping, go_atom::value, batch, done_box{&done});
    done.get_future().wait();
  }
  caf::anon_send_exit(ping, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(pong, caf::exit_reason::user_shutdown);
}

void BM_CafRequestRoundTrip(benchmark::State& state) {
  run_pinger(state, false);
}
BENCHMARK(BM_CafRequestRoundTrip)->UseRealTime();

void BM_CafRequestRoundTripWithTimeout(benchmark::State& state) {
  run_pinger(state, true);
}
BENCHMARK(BM_CafRequestRoundTripWithTimeout)->UseRealTime();

// Suspends and is resumed through the executor: one message through the actor's mailbox.
struct reschedule {
  bool await_ready() const noexcept { return false; }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    coro::executor_of(h)->post(h);
  }
  void await_resume() const noexcept {}
};

class resumer final : public actors::coro_actor {
public:
  resumer(caf::actor_config& cfg, caf::actor peer)
      : actors::coro_actor(cfg), peer_(std::move(peer)) {}
  caf::behavior make_behavior() override {
    return with_coroutines([this](go_atom, int n, bool ask_peer, done_box done) {
      spawn(ask_peer ? asks(n, done) : resumes(n, done));
    });
  }

private:
  coro::task<void> resumes(int n, done_box done) {
    for (int i = 0; i < n; ++i)
      co_await reschedule{};
    done.promise->set_value();
  }
  coro::task<void> asks(int n, done_box done) {
    for (int i = 0; i < n; ++i)
      value_or_throw(
          co_await actors::ask<int>(this, peer_, std::chrono::seconds(10), ping_atom::value, i));
    done.promise->set_value();
  }
  caf::actor peer_;
};

void run_resumer(benchmark::State& state, bool ask_peer) {
  auto& sys = system_for_benchmarks();
  auto pong = sys.spawn(ponger);
  auto r = sys.spawn<resumer>(pong);
  while (state.KeepRunningBatch(batch)) {
    std::promise<void> done;
    caf::anon_send(r, go_atom::value, batch, ask_peer, done_box{&done});
    done.get_future().wait();
  }
  caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(pong, caf::exit_reason::user_shutdown);
}

void BM_CoroutineResumeThroughMailbox(benchmark::State& state) {
  run_resumer(state, false);
}
BENCHMARK(BM_CoroutineResumeThroughMailbox)->UseRealTime();

void BM_CoroutineAskRoundTrip(benchmark::State& state) {
  run_resumer(state, true);
}
BENCHMARK(BM_CoroutineAskRoundTrip)->UseRealTime();

} // namespace

int main(int argc, char** argv) {
  caf::actor_system_config cfg;
  cfg.set("logger.verbosity", caf::atom("quiet")); // CAF as it comes: this measures CAF
  caf::actor_system sys{cfg};
  benchmark_system = &sys;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
