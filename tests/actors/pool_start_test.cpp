// Pools as they start: devices too small for their instances named before anything loads, devices
// of exactly the planned size starting, host KV pools sized for the largest KV blocks, unknown
// models refused with the catalog.

#include "tests/actors/pool_fixture.hpp"

#include <gtest/gtest.h>

namespace aeg::actors {
namespace {

// KV blocks larger than a quarter of the configured slab (as a 7B or 13B model's are on a GPU
// beside the 16 MiB default) still travel from prefill to decode: the node's host pool makes its
// slabs as large as its devices' do.
TEST_F(Pool, KvBlocksLargerThanAQuarterSlabTravelFromPrefillToDecode) {
  const auto models = deep_model();
  auto s = spec(models, {instance_role::prefill, instance_role::decode});
  s.slab_bytes = 1 << 20; // blocks over a quarter of it
  ASSERT_GT(models::plan_footprint(models[0].source,
                                   models::compute_format::for_backend(gpu::backend_kind::cpu))
                ->kv_block_bytes,
            s.slab_bytes / 4);
  const auto reqs = workload(models, 3, 4);
  const auto expected = solo(models, reqs);
  auto& p = start(s);
  submit(p.proxy(), reqs);
  const auto got = collect(reqs.size());
  expect_solo(got, reqs, expected);
  expect_nothing_held(p);
}

// A host KV pool smaller than one slab of the models' blocks is refused at start, with the size
// to give, instead of failing every hand-off later.
TEST_F(Pool, AHostKvPoolThatHoldsNoSlabOfTheModelsBlocksIsRefusedAtStart) {
  const auto models = deep_model();
  auto s = spec(models, {instance_role::prefill, instance_role::decode});
  s.host_kv_bytes = 1 << 20;
  auto p = pool::start(*sys_, s);
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message.find("give host_kv_mib 2 or more"), std::string::npos)
      << p.error().message;
}

TEST_F(Pool, UnknownModelsAreRefusedWithTheCatalog) {
  const auto models = tiny_models(2);
  auto& p = start(spec(models, {instance_role::colocated}));
  std::string message;
  (*self_)
      ->request(p.proxy(), caf::infinite, submit_atom::value, request(1, "nope", 3, 2))
      .receive([](std::uint64_t) { ADD_FAILURE() << "accepted"; },
               [&](caf::error& e) { message = sys_->render(e); });
  EXPECT_NE(message.find("unknown model 'nope'"), std::string::npos) << message;
  EXPECT_NE(message.find("m0, m1"), std::string::npos) << message;
}

// A device too small for its instances is named before any model loads (not by an instance
// after the loading), and a device of exactly the size the plan gives starts and serves.
TEST_F(Pool, ADeviceTooSmallForItsInstancesIsNamedBeforeAnyModelLoads) {
  auto s = spec(tiny_models(2), {instance_role::colocated});
  const std::size_t exact = planned(s);

  s.devices[0].memory_bytes = exact - 1024;
  std::vector<std::string> loaded;
  auto refused = pool::start(
      *sys_, s, [&](const std::string& m, std::size_t, std::size_t) { loaded.push_back(m); });
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::out_of_memory);
  EXPECT_NE(refused.error().message.find("device 'cpu0'"), std::string::npos)
      << refused.error().message;
  EXPECT_NE(refused.error().message.find("step buffers"), std::string::npos);
  EXPECT_TRUE(loaded.empty());

  s.devices[0].memory_bytes = exact;
  starts_and_serves(s);
}

// With no kv_mib the KV pool takes what is left, and an instance of several models keeps room to
// prefetch one beside the other when the device has it: the plan counts that room when the
// instance would take it, so a device of the planned size still gets its KV slab.
TEST_F(Pool, ADeviceOfThePlannedSizeStartsWithAnUnsizedKvPoolAndSeveralModels) {
  auto s = spec(tiny_models(2), {instance_role::colocated});
  s.instances[0].kv_bytes = 0;
  s.slab_bytes = 8 << 20; // a slab larger than the models: the room to prefetch would take it
  s.devices[0].memory_bytes = planned(s);
  starts_and_serves(s);
}

// Instances that share a device each get what the plan gives them, whichever starts first: none
// takes room to prefetch or KV out of the memory planned for the other, with kv_mib or without.
TEST_F(Pool, InstancesSharingADeviceOfThePlannedSizeAllStart) {
  const auto models = tiny_models(2);
  for (const std::size_t kv : {std::size_t{16} << 20, std::size_t{0}}) {
    SCOPED_TRACE(kv == 0 ? "unsized KV pools" : "sized KV pools");
    auto s = spec(models, {instance_role::prefill, instance_role::decode});
    s.devices.pop_back();
    for (auto& is : s.instances) {
      is.device = s.devices[0].name;
      is.kv_bytes = kv;
    }
    s.devices[0].memory_bytes = planned(s);
    starts_and_serves(s);
  }
}

} // namespace
} // namespace aeg::actors
