#pragma once

// Behaviour every device backend must show. Instantiated for "cpu" in tests/gpu and for "cuda"
// in tests/gpu_device (skipped where no GPU is visible).

#include "coro/async_scope.hpp"
#include "coro/manual_executor.hpp"
#include "coro/sync_wait.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/registry.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <latch>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace aeg::gpu::testing {

class DeviceConformance : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    auto d = make_device({.backend = GetParam(), .ordinal = 0, .capacity_bytes = 64 << 20});
    if (!d) {
      if (d.error().code == errc::unavailable)
        GTEST_SKIP() << d.error().to_string();
      FAIL() << d.error().to_string();
    }
    dev = *d;
  }

  std::unique_ptr<stream> new_stream() {
    auto s = dev->create_stream();
    EXPECT_TRUE(s.has_value());
    return std::move(*s);
  }
  std::unique_ptr<event> new_event() {
    auto e = dev->create_event();
    EXPECT_TRUE(e.has_value());
    return std::move(*e);
  }
  buffer alloc(std::size_t bytes) {
    auto b = dev->allocate(bytes);
    EXPECT_TRUE(b.has_value()) << b.error().to_string();
    return std::move(*b);
  }
  buffer pinned(std::size_t bytes) {
    auto b = dev->allocate_pinned(bytes);
    EXPECT_TRUE(b.has_value()) << b.error().to_string();
    return std::move(*b);
  }
  // Awaits `ev` from a coroutine, as the serving path does.
  static void await(event& ev) {
    coro::sync_wait([](event* e) -> coro::task<void> { co_await *e; }(&ev));
  }

  std::shared_ptr<device> dev;
};

TEST_P(DeviceConformance, StreamRunsItsWorkInOrder) {
  auto s = new_stream();
  auto ev = new_event();
  std::mutex m;
  std::vector<int> order;
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(s->host_callback([&, i] {
      std::lock_guard lock(m);
      order.push_back(i);
    }));
  ASSERT_TRUE(s->record(*ev));
  await(*ev);
  std::lock_guard lock(m);
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(order[i], i);
}

// An actor's work reaches a stream from whichever thread runs the actor at the moment: order is
// the order of the calls, not per thread. The stream is held at a gate so that work from every
// thread is queued at once.
TEST_P(DeviceConformance, WorkFromSeveralThreadsRunsInTheOrderItWasEnqueued) {
  auto s = new_stream();
  auto ev = new_event();
  std::latch gate(1);
  ASSERT_TRUE(s->host_callback([&] { gate.wait(); }));
  std::mutex m;
  std::vector<int> order;
  // Live threads taking turns (a finished thread's id, and what a queue keeps per thread, may
  // be reused by the next), each enqueuing more than the one before.
  constexpr int threads = 6;
  std::vector<int> first(threads + 1, 0);
  for (int t = 0; t < threads; ++t)
    first[t + 1] = first[t] + 10 * (t + 1);
  std::latch all_done(threads);
  std::deque<std::latch> turns;
  for (int t = 0; t <= threads; ++t)
    turns.emplace_back(1);
  std::vector<std::jthread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      turns[t].wait();
      for (int n = first[t]; n < first[t + 1]; ++n)
        EXPECT_TRUE(s->host_callback([&, n] {
          std::lock_guard lock(m);
          order.push_back(n);
        }));
      turns[t + 1].count_down();
      all_done.arrive_and_wait();
    });
  turns[0].count_down();
  turns[threads].wait();
  ASSERT_TRUE(s->record(*ev));
  gate.count_down();
  await(*ev);
  std::lock_guard lock(m);
  ASSERT_EQ(order.size(), static_cast<std::size_t>(first[threads]));
  for (int i = 0; i < first[threads]; ++i)
    ASSERT_EQ(order[i], i) << "work enqueued later ran first";
}

TEST_P(DeviceConformance, CopiesRoundTripThroughDeviceMemory) {
  constexpr std::size_t n = (1 << 20) + 13; // odd size on purpose
  auto host_in = pinned(n);
  auto host_out = pinned(n);
  std::mt19937 rng(7);
  for (std::size_t i = 0; i < n; ++i)
    host_in.as<unsigned char>()[i] = static_cast<unsigned char>(rng());
  std::memset(host_out.data(), 0, n);
  auto a = alloc(n);
  auto b = alloc(n);
  auto s = new_stream();
  auto ev = new_event();
  ASSERT_TRUE(s->copy(a.data(), host_in.data(), n, copy_kind::host_to_device));
  ASSERT_TRUE(s->copy(b.data(), a.data(), n, copy_kind::device_to_device));
  ASSERT_TRUE(s->copy(host_out.data(), b.data(), n, copy_kind::device_to_host));
  ASSERT_TRUE(s->record(*ev));
  await(*ev);
  EXPECT_EQ(std::memcmp(host_in.data(), host_out.data(), n), 0);
}

TEST_P(DeviceConformance, AStreamWaitingOnAnEventRunsAfterTheOtherStream) {
  constexpr std::size_t n = 4096;
  auto src = pinned(n), out = pinned(n);
  std::memset(src.data(), 0x5a, n);
  std::memset(out.data(), 0, n);
  auto mid = alloc(n);
  auto a = new_stream(), b = new_stream();
  auto ev_a = new_event(), ev_b = new_event();
  std::latch gate(1);
  // Stream a is held at a gate; stream b depends on a's copy through ev_a.
  ASSERT_TRUE(a->host_callback([&] { gate.wait(); }));
  ASSERT_TRUE(a->copy(mid.data(), src.data(), n, copy_kind::host_to_device));
  ASSERT_TRUE(a->record(*ev_a));
  ASSERT_TRUE(b->wait(*ev_a));
  ASSERT_TRUE(b->copy(out.data(), mid.data(), n, copy_kind::device_to_host));
  ASSERT_TRUE(b->record(*ev_b));
  EXPECT_FALSE(ev_b->query()) << "b must wait for a, which is held at the gate";
  gate.count_down();
  await(*ev_b);
  EXPECT_TRUE(ev_a->query());
  for (std::size_t i = 0; i < n; ++i)
    ASSERT_EQ(out.as<unsigned char>()[i], 0x5a) << "at byte " << i;
}

TEST_P(DeviceConformance, CapacityIsEnforcedAndFreedMemoryReturns) {
  const auto cap = dev->capacity_bytes();
  EXPECT_EQ(dev->used_bytes(), 0u);
  {
    auto big = alloc(cap / 2);
    auto too_much = dev->allocate(cap);
    ASSERT_FALSE(too_much.has_value());
    EXPECT_EQ(too_much.error().code, errc::out_of_memory);
    EXPECT_NE(too_much.error().message.find(dev->name()), std::string::npos);
    EXPECT_GE(dev->used_bytes(), cap / 2);
  }
  EXPECT_EQ(dev->used_bytes(), 0u);
  auto zero = dev->allocate(0);
  ASSERT_FALSE(zero.has_value());
  EXPECT_EQ(zero.error().code, errc::invalid_argument);
}

TEST_P(DeviceConformance, UnrecordedEventIsCompleteAndCallsBackAtOnce) {
  auto ev = new_event();
  EXPECT_TRUE(ev->query());
  bool called = false;
  ev->on_complete([&] { called = true; });
  EXPECT_TRUE(called);
}

TEST_P(DeviceConformance, AwaitedEventResumesOnTheCoroutinesExecutor) {
  auto exec = std::make_shared<coro::manual_executor>();
  auto s = new_stream();
  auto ev = new_event();
  std::latch gate(1);
  ASSERT_TRUE(s->host_callback([&] { gate.wait(); }));
  ASSERT_TRUE(s->record(*ev));
  std::atomic<bool> resumed{false};
  std::thread::id resumed_on;
  coro::async_scope scope;
  scope.spawn_now(exec,
                  [](event* e, std::atomic<bool>* r, std::thread::id* on) -> coro::task<void> {
                    co_await *e;
                    *on = std::this_thread::get_id();
                    r->store(true);
                  }(ev.get(), &resumed, &resumed_on));
  EXPECT_FALSE(resumed.load());
  gate.count_down();
  exec->run_until([&] { return resumed.load(); });
  EXPECT_TRUE(resumed_on == std::this_thread::get_id());
  EXPECT_EQ(scope.num_live(), 0u);
}

TEST_P(DeviceConformance, EventDestroyedBeforeItsWorkFinishesIsSafe) {
  auto s = new_stream();
  std::latch gate(1);
  ASSERT_TRUE(s->host_callback([&] { gate.wait(); }));
  {
    auto ev = new_event();
    ASSERT_TRUE(s->record(*ev));
  }
  auto done = new_event();
  ASSERT_TRUE(s->record(*done));
  gate.count_down();
  await(*done);
}

} // namespace aeg::gpu::testing
