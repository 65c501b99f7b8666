#include "tests/gpu/device_conformance.hpp"

namespace aeg::gpu::testing {

INSTANTIATE_TEST_SUITE_P(Cpu, DeviceConformance, ::testing::Values(std::string("cpu")));

TEST(CpuDevice, TwoDevicesKeepSeparateBudgets) {
  auto a = make_device({.backend = "cpu", .ordinal = 0, .capacity_bytes = 1 << 20});
  auto b = make_device({.backend = "cpu", .ordinal = 1, .capacity_bytes = 1 << 20});
  ASSERT_TRUE(a && b);
  auto x = (*a)->allocate(1 << 20);
  ASSERT_TRUE(x.has_value());
  EXPECT_FALSE((*a)->allocate(1).has_value());
  EXPECT_TRUE((*b)->allocate(1 << 20).has_value());
  EXPECT_EQ((*a)->name(), "cpu:0");
  EXPECT_EQ((*b)->name(), "cpu:1");
}

TEST(CpuDevice, StreamDestructionFinishesEnqueuedWork) {
  auto d = make_device({.backend = "cpu"});
  ASSERT_TRUE(d);
  std::atomic<int> ran{0};
  {
    auto s = (*d)->create_stream();
    ASSERT_TRUE(s);
    for (int i = 0; i < 1000; ++i)
      ASSERT_TRUE((*s)->host_callback([&] { ran.fetch_add(1); }));
  }
  EXPECT_EQ(ran.load(), 1000);
}

// A kernel that throws poisons its stream as a fault poisons a CUDA context: the work after it
// is skipped and the events recorded after it fail with the reason, so an awaiting coroutine
// hears why instead of waiting forever or reading results never made. A stream that waits on
// a failed event fails with it (its work would read what was never made); others go on.
TEST(CpuDevice, AKernelThatThrowsFailsTheEventsRecordedAfterIt) {
  auto d = make_device({.backend = "cpu"});
  ASSERT_TRUE(d);
  auto s = *(*d)->create_stream();
  auto other = *(*d)->create_stream();
  auto apart = *(*d)->create_stream();
  auto before = *(*d)->create_event();
  auto after = *(*d)->create_event();
  auto later = *(*d)->create_event();
  auto fine = *(*d)->create_event();
  std::atomic<int> ran{0};
  ASSERT_TRUE(s->host_callback([&] { ran.fetch_add(1); }));
  ASSERT_TRUE(s->record(*before));
  ASSERT_TRUE(s->host_callback([] { throw std::runtime_error("illegal address"); }));
  ASSERT_TRUE(s->host_callback([&] { ran.fetch_add(10); }));
  ASSERT_TRUE(s->record(*after));
  // A stream waiting on the failed event is not stalled forever: it fails with it.
  ASSERT_TRUE(other->wait(*after));
  ASSERT_TRUE(other->host_callback([&] { ran.fetch_add(100); }));
  ASSERT_TRUE(other->record(*later));
  ASSERT_TRUE(apart->host_callback([&] { ran.fetch_add(1000); }));
  ASSERT_TRUE(apart->record(*fine));

  auto await = [](event& ev) {
    coro::sync_wait([](event* e) -> coro::task<void> { co_await *e; }(&ev));
  };
  await(*before);
  EXPECT_TRUE(before->failure().empty());
  try {
    await(*after);
    ADD_FAILURE() << "awaiting work the device failed must throw";
  } catch (const error_exception& e) {
    EXPECT_EQ(e.error().code, errc::device_error);
    EXPECT_NE(std::string(e.what()).find("illegal address"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(after->query());
  EXPECT_NE(after->failure().find("illegal address"), std::string::npos);
  EXPECT_THROW(await(*later), error_exception);
  EXPECT_NE(later->failure().find("illegal address"), std::string::npos);
  await(*fine);
  EXPECT_TRUE(fine->failure().empty());
  EXPECT_EQ(ran.load(), 1001)
      << "work behind the fault, on its stream or waiting on it, must not run";

  // The stream stays faulted: later records fail too.
  auto again = *(*d)->create_event();
  ASSERT_TRUE(s->record(*again));
  EXPECT_THROW(await(*again), error_exception);
}

} // namespace aeg::gpu::testing
