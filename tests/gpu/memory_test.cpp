#include "coro/sync_wait.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/kv_ledger_copy.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/registry.hpp"
#include "gpu/slab_pool.hpp"
#include "gpu/weight_arena.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <thread>

namespace aeg::gpu {
namespace {

TEST(SlabPool, BlocksOfEachSizeLieInsideTheirSlabsAndNeverOverlap) {
  std::vector<std::byte> memory(1 << 20);
  slab_pool pool(memory.data(), memory.size(), 64 << 10); // 16 slabs
  std::map<std::size_t, std::vector<std::int32_t>> held;
  for (std::size_t b : {4096u, 6000u, 12288u}) // sizes that do and do not divide a slab
    ASSERT_TRUE(pool.allocate(b, 10, held[b]));
  std::vector<std::pair<std::size_t, std::size_t>> ranges;
  for (const auto& [b, ids] : held)
    for (auto id : ids) {
      const std::size_t start = static_cast<std::size_t>(id) * b;
      ranges.emplace_back(start, start + b);
      EXPECT_EQ(start / (64 << 10), (start + b - 1) / (64 << 10)) << "block crosses its slab";
      EXPECT_LE(start + b, memory.size());
    }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i)
    EXPECT_LE(ranges[i - 1].second, ranges[i].first);
  EXPECT_EQ(pool.allocated_bytes(), 10u * (4096 + 6000 + 12288));
}

TEST(SlabPool, EmptySlabsReturnAndServeAnotherSize) {
  std::vector<std::byte> memory(256 << 10);
  slab_pool pool(memory.data(), memory.size(), 64 << 10); // 4 slabs
  std::vector<std::int32_t> a;
  ASSERT_TRUE(pool.allocate(16 << 10, 16, a)); // every slab, 4 blocks each
  std::vector<std::int32_t> b;
  auto full = pool.allocate(8 << 10, 1, b);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, errc::out_of_memory);
  EXPECT_TRUE(b.empty());
  pool.free(16 << 10, std::span(a).first(4)); // empties one slab (the fullest-first rule filled
  EXPECT_GE(pool.num_free_slabs(), 1u);       // slabs one by one)
  ASSERT_TRUE(pool.allocate(8 << 10, 8, b));
  EXPECT_EQ(pool.num_used(8 << 10), 8u);
  pool.free(16 << 10, std::span(a).subspan(4));
  pool.free(8 << 10, b);
  EXPECT_EQ(pool.num_free_slabs(), 4u);
  EXPECT_EQ(pool.fragmentation(), 0.0);
}

TEST(SlabPool, RandomAllocationAndFreeingOfMixedSizesLosesNothing) {
  std::vector<std::byte> memory(4 << 20);
  slab_pool pool(memory.data(), memory.size(), 256 << 10);
  std::mt19937 rng(7);
  const std::size_t sizes[] = {3072, 16384, 36864, 61440};
  std::map<std::size_t, std::vector<std::int32_t>> held;
  std::set<std::pair<std::size_t, std::int32_t>> live;
  for (int op = 0; op < 5000; ++op) {
    const std::size_t b = sizes[rng() % 4];
    auto& ids = held[b];
    if (rng() % 2 == 0) {
      std::vector<std::int32_t> got;
      const std::size_t n = 1 + rng() % 6;
      if (pool.allocate(b, n, got)) {
        ASSERT_EQ(got.size(), n);
        for (auto id : got)
          ASSERT_TRUE(live.insert({b, id}).second) << "block handed out twice";
        ids.insert(ids.end(), got.begin(), got.end());
      }
    } else if (!ids.empty()) {
      const std::size_t k = rng() % ids.size();
      pool.free(b, std::span(&ids[k], 1));
      live.erase({b, ids[k]});
      ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(k));
    }
    ASSERT_GE(pool.fragmentation(), 0.0);
    ASSERT_LE(pool.fragmentation(), 1.0);
  }
  for (auto& [b, ids] : held)
    pool.free(b, ids);
  EXPECT_EQ(pool.num_free_slabs(), pool.num_slabs());
  EXPECT_EQ(pool.allocated_bytes(), 0u);
}

// What num_free promises is exactly what allocate gives, for sizes that do not divide the slabs
// (blocks straddling a slab boundary belong to neither), after any history of frees.
TEST(SlabPool, NumFreeIsExactlyWhatAllocateGives) {
  std::vector<std::byte> memory(6 << 20);
  std::mt19937 rng(11);
  const std::size_t sizes[] = {3072, 16384, 36864, 61440, 917504 / 16};
  for (int trial = 0; trial < 40; ++trial) {
    slab_pool pool(memory.data(), memory.size(), 256 << 10);
    std::vector<std::pair<std::size_t, std::int32_t>> live;
    for (int op = 0; op < 200; ++op) {
      const std::size_t b = sizes[rng() % std::size(sizes)];
      std::vector<std::int32_t> got;
      if (rng() % 3 != 0 && pool.allocate(b, 1 + rng() % 8, got).has_value())
        for (auto id : got)
          live.emplace_back(b, id);
      else if (!live.empty()) {
        const std::size_t k = rng() % live.size();
        pool.free(live[k].first, std::span(&live[k].second, 1));
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
      }
    }
    const std::size_t b = sizes[rng() % std::size(sizes)];
    const std::size_t n = pool.num_free(b);
    slab_pool copy = pool;
    std::vector<std::int32_t> got;
    EXPECT_FALSE(copy.allocate(b, n + 1, got).has_value()) << "trial " << trial;
    EXPECT_TRUE(pool.allocate(b, n, got).has_value()) << "trial " << trial;
    EXPECT_EQ(pool.num_free(b), 0u);
  }
}

// Slabs of up to 128 blocks keep their free blocks in the pool's own entries, larger ones on the
// heap: either way a copy (a planner's) is a pool of its own, and every block is handed out once.
TEST(SlabPool, ACopyIsIndependentWhateverTheBlocksPerSlab) {
  std::vector<std::byte> memory(2 << 20);
  slab_pool pool(memory.data(), memory.size(), 256 << 10);
  const std::size_t small = 512, large = 3072; // 512 blocks a slab, and 85
  std::vector<std::int32_t> a, b;
  ASSERT_TRUE(pool.allocate(small, 700, a).has_value()); // two slabs, the second part full
  ASSERT_TRUE(pool.allocate(large, 100, b).has_value());
  const std::size_t free_small = pool.num_free(small), free_large = pool.num_free(large);

  slab_pool copy = pool;
  copy.free(small, std::span(a).subspan(0, 300));
  copy.free(large, std::span(b).subspan(0, 40));
  std::vector<std::int32_t> more;
  ASSERT_TRUE(copy.allocate(small, 200, more).has_value());
  EXPECT_EQ(copy.num_free(small), free_small + 100);
  // The original did not see any of it, and hands out none of the blocks it still holds.
  EXPECT_EQ(pool.num_free(small), free_small);
  EXPECT_EQ(pool.num_free(large), free_large);
  std::vector<std::int32_t> rest;
  ASSERT_TRUE(pool.allocate(small, free_small, rest).has_value());
  std::set<std::int32_t> seen(a.begin(), a.end());
  for (auto id : rest)
    EXPECT_TRUE(seen.insert(id).second) << "block " << id << " handed out twice";
  // Every block back in the copy frees every slab.
  copy.free(small, more);
  copy.free(small, std::span(a).subspan(300));
  copy.free(large, std::span(b).subspan(40));
  EXPECT_EQ(copy.num_free_slabs(), copy.num_slabs());
  EXPECT_EQ(copy.allocated_bytes(), 0u);
}

TEST(SlabPoolDeathTest, ABlockFreedTwiceAborts) {
  std::vector<std::byte> memory(1 << 20);
  slab_pool pool(memory.data(), memory.size(), 256 << 10);
  std::vector<std::int32_t> ids;
  ASSERT_TRUE(pool.allocate(512, 3, ids).has_value());
  pool.free(512, std::span(ids).subspan(0, 1));
  EXPECT_DEATH(pool.free(512, std::span(ids).subspan(0, 1)), "freed twice");
}

TEST(SlabPool, BlocksTooLargeForSlabsAreRefused) {
  std::vector<std::byte> memory(1 << 20);
  slab_pool pool(memory.data(), memory.size(), 64 << 10);
  std::vector<std::int32_t> ids;
  auto r = pool.allocate(32 << 10, 1, ids);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
}

// A transfer on a CPU stream that cannot finish until the test lets it: a host callback spins
// until `finish()`, then `done` completes.
struct held_transfer {
  explicit held_transfer(device& dev)
      : copier(std::move(*dev.create_stream())), done(std::move(*dev.create_event())) {
    EXPECT_TRUE(copier->host_callback([this] {
      while (!released.load())
        std::this_thread::yield();
    }));
    EXPECT_TRUE(copier->record(*done));
  }
  ~held_transfer() { finish(); }
  void finish() {
    released.store(true);
    coro::sync_wait([](event* e) -> coro::task<void> { co_await *e; }(done.get()));
  }
  std::unique_ptr<gpu::stream> copier;
  std::shared_ptr<event> done;
  std::atomic<bool> released{false};
};

TEST(KvPool, BlocksFreedAfterATransferWaitOnTheMoveListUntilItCompletes) {
  auto dev = *make_device({.backend = "cpu"});
  kv_pool pool(std::move(*dev->allocate_pinned(256 << 10)), 64 << 10);
  held_transfer copy(*dev);
  std::vector<std::int32_t> ids;
  ASSERT_TRUE(pool.allocate(16 << 10, 16, ids)); // all of it
  pool.free_after(16 << 10, ids, {copy.done});
  EXPECT_EQ(pool.num_moving(), 16u);
  std::vector<std::int32_t> more;
  EXPECT_FALSE(pool.allocate(16 << 10, 1, more)); // still in flight: not reusable
  copy.finish();
  EXPECT_TRUE(pool.allocate(16 << 10, 16, more)); // reclaimed on demand
  EXPECT_EQ(pool.num_moving(), 0u);
}

// Blocks still being copied out can be handed on at once, with the copy's event for the new
// owner's stream to wait on; blocks not taken stay on the move list behind the same event, so a
// plain allocation never gets memory a transfer still uses.
TEST(KvPool, BlocksInFlightAreHandedOnWithTheEventToWaitFor) {
  auto dev = *make_device({.backend = "cpu"});
  kv_pool pool(std::move(*dev->allocate_pinned(256 << 10)), 64 << 10);
  held_transfer copy(*dev);
  std::vector<std::int32_t> ids;
  ASSERT_TRUE(pool.allocate(16 << 10, 16, ids)); // all of it
  pool.free_after(16 << 10, ids, {copy.done});
  EXPECT_EQ(pool.num_available(16 << 10), 16u);
  // Another size counts the slabs coming back, but gets them only once their copies are done.
  EXPECT_EQ(pool.num_available(8 << 10), 32u);
  std::vector<std::int32_t> other;
  std::vector<std::shared_ptr<event>> other_wait;
  EXPECT_FALSE(pool.allocate_after(8 << 10, 1, other, other_wait));

  std::vector<std::int32_t> taken;
  std::vector<std::shared_ptr<event>> wait_for;
  ASSERT_TRUE(pool.allocate_after(16 << 10, 5, taken, wait_for));
  EXPECT_EQ(taken.size(), 5u);
  ASSERT_EQ(wait_for.size(), 1u);
  EXPECT_EQ(wait_for.front(), copy.done);
  EXPECT_EQ(pool.num_moving(), 11u); // the rest still wait for the transfer
  std::vector<std::int32_t> plain;
  EXPECT_FALSE(pool.allocate(16 << 10, 1, plain));
  std::vector<std::int32_t> too_many;
  std::vector<std::shared_ptr<event>> none;
  EXPECT_FALSE(pool.allocate_after(16 << 10, 12, too_many, none)); // all or nothing
  EXPECT_TRUE(too_many.empty());
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(pool.num_moving(), 11u);

  copy.finish();
  ASSERT_TRUE(pool.allocate(16 << 10, 11, plain));
  for (auto id : taken) // no block was handed out twice
    EXPECT_EQ(std::count(plain.begin(), plain.end(), id), 0) << "block " << id;
  pool.free(16 << 10, taken);
  pool.free(16 << 10, plain);
  EXPECT_EQ(pool.num_available(16 << 10), 16u);
}

// Room on its way for another size: a slab whose every block is being copied out comes back
// whole once the copies complete; a slab with a block still in use does not.
TEST(KvPool, SlabsWhoseEveryBlockIsMovingCountAsRoomForOtherSizes) {
  auto dev = *make_device({.backend = "cpu"});
  kv_pool pool(std::move(*dev->allocate_pinned(256 << 10)), 64 << 10); // 4 slabs
  held_transfer copy(*dev);
  std::vector<std::int32_t> a, b;
  ASSERT_TRUE(pool.allocate(16 << 10, 4, a));                 // one whole slab
  ASSERT_TRUE(pool.allocate(16 << 10, 4, b));                 // another
  EXPECT_EQ(pool.num_available(8 << 10), 16u);                // two free slabs of eight blocks each
  pool.free_after(16 << 10, a, {copy.done});                  // all of a's slab moving
  pool.free_after(16 << 10, {b[0], b[1], b[2]}, {copy.done}); // b's slab keeps one block in use
  EXPECT_EQ(pool.num_available(8 << 10), 24u);
  copy.finish();
  std::vector<std::int32_t> small;
  EXPECT_TRUE(pool.allocate(8 << 10, 24, small));
  pool.free(8 << 10, small);
  pool.free(16 << 10, std::vector<std::int32_t>{b[3]});
}

// A planner's snapshot is shared while the pool is unchanged, taken again after any change
// (a transfer finishing included), and copied by a planner only when it edits it.
TEST(KvPool, SnapshotsAreSharedUntilThePoolChangesAndCopiedOnlyWhenEdited) {
  auto dev = *make_device({.backend = "cpu"});
  kv_pool pool(std::move(*dev->allocate_pinned(256 << 10)), 64 << 10);
  held_transfer copy(*dev);
  std::vector<std::int32_t> ids;
  ASSERT_TRUE(pool.allocate(16 << 10, 6, ids));
  const auto first = pool.snapshot();
  EXPECT_EQ(pool.snapshot(), first);
  EXPECT_EQ(first->slabs().num_used(16 << 10), 6u);

  pool.free_after(16 << 10, {ids[4], ids[5]}, {copy.done});
  const auto moving = pool.snapshot();
  EXPECT_NE(moving, first);
  EXPECT_EQ(moving->num_moving(), 2u);
  EXPECT_EQ(first->num_moving(), 0u); // an old snapshot never changes
  EXPECT_EQ(pool.snapshot(), moving);
  copy.finish();
  const auto settled = pool.snapshot(); // the transfer finished: its blocks are free now
  EXPECT_NE(settled, moving);
  EXPECT_EQ(settled->num_moving(), 0u);
  EXPECT_EQ(settled->slabs().num_used(16 << 10), 4u);

  kv_ledger_copy planned(settled), other(settled);
  EXPECT_EQ(&*planned, settled.get()); // read without a copy
  std::vector<std::int32_t> more;
  ASSERT_TRUE(planned.edit().allocate(16 << 10, 3, more));
  EXPECT_NE(&*planned, settled.get());
  EXPECT_EQ(planned->slabs().num_used(16 << 10), 7u);
  EXPECT_EQ(settled->slabs().num_used(16 << 10), 4u); // the pool's and the other planner's
  EXPECT_EQ(other->slabs().num_used(16 << 10), 4u);
  kv_ledger_copy again(planned); // a copy of an edited ledger is a ledger of its own
  again.edit().free(16 << 10, more);
  EXPECT_EQ(planned->slabs().num_used(16 << 10), 7u);
  EXPECT_EQ(again->slabs().num_used(16 << 10), 4u);
  pool.free(16 << 10, std::span(ids).first(4));
}

TEST(WeightArena, TwoModelsSitAtOppositeEndsAndScalingDownIsForgetting) {
  auto dev = *make_device({.backend = "cpu"});
  weight_arena arena(std::move(*dev->allocate(1 << 20)));
  auto* a = *arena.stage(400 << 10);
  arena.activate();
  auto* b = *arena.stage(500 << 10);
  EXPECT_NE(a, b);
  EXPECT_TRUE(a + (400 << 10) <= b || b + (500 << 10) <= a) << "the two models overlap";
  EXPECT_FALSE(arena.stage(700 << 10)) << "does not fit beside the active model";
  arena.activate(); // b becomes active; a's space is free
  EXPECT_EQ(arena.active(), b);
  auto* c = *arena.stage(450 << 10); // where a was
  EXPECT_TRUE(c + (450 << 10) <= b || b + (500 << 10) <= c);
  arena.drop_active();
  arena.drop_staged();
  EXPECT_EQ(arena.free_bytes(), arena.capacity());
}

// Two resident models trade places without moving: each keeps its address and size.
TEST(WeightArena, SwapKeepsBothModelsWhereTheyAre) {
  auto dev = *make_device({.backend = "cpu"});
  weight_arena arena(std::move(*dev->allocate(1 << 20)));
  auto* a = *arena.stage(400 << 10);
  arena.activate();
  auto* b = *arena.stage(300 << 10);
  arena.swap();
  EXPECT_EQ(arena.active(), b);
  EXPECT_EQ(arena.staged(), a);
  EXPECT_EQ(arena.active_bytes(), std::size_t{300} << 10);
  EXPECT_EQ(arena.staged_bytes(), std::size_t{400} << 10);
  arena.swap();
  EXPECT_EQ(arena.active(), a);
  EXPECT_EQ(arena.staged(), b);
  EXPECT_EQ(arena.free_bytes(), arena.capacity() - (std::size_t{700} << 10));
}

} // namespace
} // namespace aeg::gpu
