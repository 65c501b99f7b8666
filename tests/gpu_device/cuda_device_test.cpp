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

} // namespace aeg::gpu::testing
