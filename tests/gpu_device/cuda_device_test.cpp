#include "kernels/axpy.hpp"
#include "kernels/cpu/axpy.hpp"
#include "tests/gpu/device_conformance.hpp"

#include <cmath>

namespace aeg::gpu::testing {

INSTANTIATE_TEST_SUITE_P(Cuda, DeviceConformance, ::testing::Values(std::string("cuda")));

// The CUDA kernel against its CPU twin on random inputs; tolerance 1e-6 relative (one fma).
TEST(CudaKernels, AxpyMatchesTheCpuReference) {
  auto d = make_device({.backend = "cuda"});
  if (!d)
    GTEST_SKIP() << d.error().to_string();
  auto dev = *d;
  constexpr std::size_t n = 1 << 20;
  std::vector<float> x(n), y(n), ref(n);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-2, 2);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = u(rng);
    y[i] = ref[i] = u(rng);
  }
  kernels::cpu::axpy(1.25f, x.data(), ref.data(), n);
  auto hx = *dev->allocate_pinned(n * 4), hy = *dev->allocate_pinned(n * 4);
  std::memcpy(hx.data(), x.data(), n * 4);
  std::memcpy(hy.data(), y.data(), n * 4);
  auto dx = *dev->allocate(n * 4), dy = *dev->allocate(n * 4);
  auto s = std::move(*dev->create_stream());
  auto ev = std::move(*dev->create_event());
  ASSERT_TRUE(s->copy(dx.data(), hx.data(), n * 4, copy_kind::host_to_device));
  ASSERT_TRUE(s->copy(dy.data(), hy.data(), n * 4, copy_kind::host_to_device));
  ASSERT_TRUE(kernels::axpy(*s, 1.25f, dx.as<float>(), dy.as<float>(), n));
  ASSERT_TRUE(s->copy(hy.data(), dy.data(), n * 4, copy_kind::device_to_host));
  ASSERT_TRUE(s->record(*ev));
  coro::sync_wait([](event* e) -> coro::task<void> { co_await *e; }(ev.get()));
  for (std::size_t i = 0; i < n; ++i)
    ASSERT_NEAR(hy.as<float>()[i], ref[i], 1e-6f * (1 + std::fabs(ref[i]))) << "at " << i;
}

// A kernel that faults makes the context's error sticky, and the host functions that would
// complete later events never run: the device's watchdog must fail those events with the
// driver's reason, so the awaiting coroutine throws instead of waiting forever. The fault
// poisons the process's context: scripts/device-check runs this test in a process of its own.
TEST(CudaFault, AFaultFailsTheEventsAfterItInsteadOfHanging) {
  auto d = make_device({.backend = "cuda"});
  if (!d)
    GTEST_SKIP() << d.error().to_string();
  auto dev = *d;
  auto s = std::move(*dev->create_stream());
  auto ev = std::move(*dev->create_event());
  // Writes through a pointer no allocation owns: an illegal address on the device.
  auto* nowhere = reinterpret_cast<float*>(std::uintptr_t{0x100});
  ASSERT_TRUE(kernels::axpy(*s, 1.0f, nowhere, nowhere, 1 << 20));
  (void)s->record(*ev); // may already report the fault; the event must end either way
  try {
    coro::sync_wait([](event* e) -> coro::task<void> { co_await *e; }(ev.get()));
    ADD_FAILURE() << "awaiting work behind a fault must throw";
  } catch (const error_exception& e) {
    EXPECT_EQ(e.error().code, errc::device_error);
    EXPECT_FALSE(ev->failure().empty());
  }
  // Later records fail at once.
  auto later = std::move(*dev->create_event());
  EXPECT_FALSE(s->record(*later));
  EXPECT_TRUE(later->query());
}

} // namespace aeg::gpu::testing
