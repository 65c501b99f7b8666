#include "gpu/registry.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace aeg::gpu {
namespace {

TEST(Registry, UnknownBackendIsNotFoundAndNamesTheChoices) {
  auto d = make_device({.backend = "tpu"});
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code, errc::not_found);
  EXPECT_NE(d.error().message.find("'cpu' or 'cuda'"), std::string::npos);
}

TEST(Registry, CpuIsAlwaysBuilt) {
  auto names = built_backends();
  EXPECT_NE(std::find(names.begin(), names.end(), "cpu"), names.end());
  auto d = make_device({.backend = "cpu"});
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ((*d)->capacity_bytes(), default_cpu_capacity_bytes);
}

// Without a usable GPU (no CUDA in the build, no driver, or an insufficient driver) asking for
// cuda is a clear "unavailable", never a crash.
TEST(Registry, CudaWithoutAGpuReadsAsUnavailable) {
  auto d = make_device({.backend = "cuda"});
  if (gpu_available()) {
    EXPECT_TRUE(d.has_value()) << d.error().to_string();
    return;
  }
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code, errc::unavailable);
  const auto& msg = d.error().message;
  EXPECT_TRUE(msg.find("no GPU") != std::string::npos ||
              msg.find("without CUDA") != std::string::npos)
      << msg;
}

} // namespace
} // namespace aeg::gpu
