// Device-memory sizing from the description that allocates: what a KV slab must hold for the
// block sizes of real model shapes.

#include "gpu/kv_ledger.hpp"
#include "models/sizing.hpp"

#include <gtest/gtest.h>

namespace aeg::models {
namespace {

model_footprint shape(const char* name) {
  const auto f =
      plan_footprint({.synthetic = name}, compute_format::for_backend(gpu::backend_kind::cuda));
  EXPECT_TRUE(f.has_value()) << (f ? "" : f.error().message);
  return *f;
}

// Llama-2-7B and 13B keep 8 and 12.5 MiB of bf16 KV per 16-token block: over a quarter of the
// 16 MiB default slab, which then could not hold a single one of them.
TEST(Sizing, SlabsHoldFourBlocksOfTheLargestModelOfThe7BAnd13BShapes) {
  const model_footprint models[] = {shape("smollm2-135m"), shape("llama-2-7b"),
                                    shape("llama-2-13b")};
  EXPECT_EQ(models[1].kv_block_bytes, std::size_t{8} << 20);
  EXPECT_EQ(models[2].kv_block_bytes, std::size_t{25} << 19);
  const std::size_t configured = std::size_t{16} << 20;
  const std::size_t slab = slab_bytes_for(models, configured);
  EXPECT_EQ(slab, 4 * models[2].kv_block_bytes);
  // A pool of such slabs takes blocks of every shape; one of the configured size takes neither.
  for (const auto& m : models) {
    gpu::kv_ledger pool(nullptr, 4 * slab, slab);
    std::vector<std::int32_t> ids;
    EXPECT_TRUE(pool.allocate(m.kv_block_bytes, 4, ids).has_value()) << m.config.name;
  }
  gpu::kv_ledger small(nullptr, 4 * configured, configured);
  std::vector<std::int32_t> ids;
  EXPECT_FALSE(small.allocate(models[1].kv_block_bytes, 1, ids).has_value());
  // The configured size stands when it is large enough already.
  EXPECT_EQ(slab_bytes_for(models, std::size_t{64} << 20), std::size_t{64} << 20);
}

// An engine planned for those models makes slabs of the same size.
TEST(Sizing, AnEnginesSlabsFollowTheSameRule) {
  instance_sizing s;
  s.models = {shape("llama-2-7b"), shape("llama-2-13b")};
  const auto eo = plan_engine(s, std::size_t{80} << 30);
  EXPECT_EQ(eo.slab_bytes, slab_bytes_for(s.models, s.slab_bytes));
  EXPECT_GE(eo.kv_bytes, eo.slab_bytes);
}

// "Does not fit" says what the memory is, what is needed in its parts, and what to change.
TEST(Sizing, DoesNotFitHasOneWording) {
  const auto e =
      does_not_fit("device 'gpu0'", std::size_t{64} << 20,
                   device_plan{std::size_t{92} << 20, std::size_t{30} << 20, std::size_t{28} << 20},
                   "give it more memory_mib");
  EXPECT_EQ(e.code, errc::out_of_memory);
  EXPECT_EQ(e.message, "device 'gpu0' has 64 MiB; it needs 150 MiB (weights 92, step buffers "
                       "30, KV 28); give it more memory_mib");
}

} // namespace
} // namespace aeg::models
