#include "gpu/registry.hpp"
#include "models/model_cache.hpp"
#include "tests/support/tiny_llama.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

namespace aeg::models {
namespace {

namespace fs = std::filesystem;

class ModelCache : public ::testing::Test {
protected:
  ModelCache() {
    dev_ = *gpu::make_device({.backend = "cpu"});
    dir_ = fs::temp_directory_path() / ("aeg-cache-test-" + std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
    for (std::uint32_t seed : {1u, 2u}) {
      aeg::testing::tiny_llama_spec spec;
      spec.seed = seed;
      const auto path = (dir_ / ("tiny" + std::to_string(seed) + ".gguf")).string();
      EXPECT_TRUE(aeg::testing::write_tiny_llama(spec, path));
      paths_.push_back(path);
    }
  }
  ~ModelCache() override { fs::remove_all(dir_); }

  std::shared_ptr<gpu::device> dev_;
  fs::path dir_;
  std::vector<std::string> paths_;
  const compute_format cpu = compute_format::for_backend(gpu::backend_kind::cpu);
};

TEST_F(ModelCache, LoadsEachModelOnceAndShowsProgress) {
  model_cache cache(dev_, {});
  std::size_t last = 0, total = 0;
  auto a = cache.add("a", {paths_[0], {}, 1}, cpu, [&](std::size_t done, std::size_t all) {
    EXPECT_GE(done, last);
    last = done;
    total = all;
  });
  ASSERT_TRUE(a.has_value()) << a.error().to_string();
  EXPECT_EQ(last, total);
  EXPECT_EQ(total, (*a)->bytes().size());
  auto again = cache.add("a", {paths_[0], {}, 1}, cpu);
  EXPECT_EQ(again->get(), a->get());
  EXPECT_EQ(cache.find("a"), *a);
  EXPECT_EQ(cache.find("b"), nullptr);
  EXPECT_EQ(cache.used_bytes(), (*a)->bytes().size());
}

TEST_F(ModelCache, ABudgetThatCannotHoldAModelSaysSo) {
  model_cache probe(dev_, {});
  const auto size = (*probe.add("a", {paths_[0], {}, 1}, cpu))->bytes().size();
  model_cache cache(dev_, {size + size / 2, {}});
  ASSERT_TRUE(cache.add("a", {paths_[0], {}, 1}, cpu));
  auto b = cache.add("b", {paths_[1], {}, 1}, cpu);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, errc::out_of_memory);
  EXPECT_NE(b.error().message.find("'b'"), std::string::npos) << b.error().message;
  EXPECT_NE(b.error().message.find("budget"), std::string::npos);
  EXPECT_EQ(cache.used_bytes(), size); // nothing of b kept
}

TEST_F(ModelCache, ProcessesShareOneFileInASharedDirectory) {
  const std::string shared = (dir_ / "shm").string();
  model_cache first(dev_, {0, shared});
  auto a = first.add("a", {paths_[0], {}, 1}, cpu);
  ASSERT_TRUE(a.has_value()) << a.error().to_string();
  EXPECT_FALSE(first.reused_shared_file("a"));
  // A second cache (as another process would) maps the same file instead of converting.
  model_cache second(dev_, {0, shared});
  auto b = second.add("a", {paths_[0], {}, 1}, cpu);
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(second.reused_shared_file("a"));
  ASSERT_EQ((*a)->bytes().size(), (*b)->bytes().size());
  EXPECT_EQ(std::memcmp((*a)->bytes().data(), (*b)->bytes().data(), (*a)->bytes().size()), 0);
  // The same name with other weights (another file) is a different image, not the stale one.
  auto other = second.add("a2", {paths_[1], {}, 1}, cpu);
  ASSERT_TRUE(other.has_value());
  EXPECT_FALSE(second.reused_shared_file("a2"));
  EXPECT_NE(std::memcmp((*a)->bytes().data(), (*other)->bytes().data(), (*a)->bytes().size()), 0);
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(shared)) {
    EXPECT_EQ(e.path().extension(), ".img") << e.path() << " left behind";
    ++files;
  }
  EXPECT_EQ(files, 2u);
}

TEST_F(ModelCache, ASyntheticModelOfARealShapeIsPlannedBeforeItIsMade) {
  model_cache cache(dev_, {64 << 20, {}});
  auto big = cache.add("7b", {{}, "llama-2-7b", 1}, cpu);
  ASSERT_FALSE(big); // about 3.8 GiB in Q4_1: refused before a byte is allocated
  EXPECT_EQ(big.error().code, errc::out_of_memory);
  EXPECT_EQ(cache.used_bytes(), 0u);
}

} // namespace
} // namespace aeg::models
