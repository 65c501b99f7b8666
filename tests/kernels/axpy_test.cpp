#include "coro/sync_wait.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/registry.hpp"
#include "kernels/axpy.hpp"
#include "kernels/cpu/axpy.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace aeg::kernels {
namespace {

TEST(Axpy, RunsOnACpuStreamAfterTheCopiesBeforeIt) {
  auto dev = *gpu::make_device({.backend = "cpu"});
  constexpr std::size_t n = 1000;
  std::vector<float> x(n), y(n), expected(n);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = u(rng);
    y[i] = u(rng);
    expected[i] = y[i] + 0.5f * x[i];
  }
  auto hx = *dev->allocate_pinned(n * 4), hy = *dev->allocate_pinned(n * 4);
  std::memcpy(hx.data(), x.data(), n * 4);
  std::memcpy(hy.data(), y.data(), n * 4);
  auto dx = *dev->allocate(n * 4), dy = *dev->allocate(n * 4);
  auto s = std::move(*dev->create_stream());
  auto ev = std::move(*dev->create_event());
  ASSERT_TRUE(s->copy(dx.data(), hx.data(), n * 4, gpu::copy_kind::host_to_device));
  ASSERT_TRUE(s->copy(dy.data(), hy.data(), n * 4, gpu::copy_kind::host_to_device));
  ASSERT_TRUE(axpy(*s, 0.5f, dx.as<float>(), dy.as<float>(), n));
  ASSERT_TRUE(s->copy(hy.data(), dy.data(), n * 4, gpu::copy_kind::device_to_host));
  ASSERT_TRUE(s->record(*ev));
  coro::sync_wait([](gpu::event* e) -> coro::task<void> { co_await *e; }(ev.get()));
  for (std::size_t i = 0; i < n; ++i)
    EXPECT_FLOAT_EQ(hy.as<float>()[i], expected[i]);
}

} // namespace
} // namespace aeg::kernels
