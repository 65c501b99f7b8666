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

} // namespace aeg::gpu::testing
