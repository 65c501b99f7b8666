#pragma once

#include "coro/error.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <utility>
#include <vector>

namespace aeg::gpu {

/// KV blocks of several sizes in one memory region (device or pinned host). The region is cut
/// into equal slabs; a slab in use serves blocks of one size only (one KV geometry), and goes back
/// to the free slabs when its last block is freed, so models of different shapes share the
/// memory without fragmenting it into unusable holes.
///
/// A block is named by its index in units of its own size from the region's base: block `id` of
/// size `b` occupies bytes [id·b, (id+1)·b), which is how the kernels address it. Plain
/// accounting, never touching the memory: copyable (a planner simulates on a copy) and not
/// thread-safe (`kv_pool` locks around it).
class slab_pool {
public:
  /// Manages `bytes` bytes at `base` (not owned) in slabs of `slab_bytes`.
  slab_pool(void* base, std::size_t bytes, std::size_t slab_bytes);

  /// Appends `n` free blocks of `block_bytes` to `out`, or takes none and returns
  /// `errc::out_of_memory`. Blocks larger than a quarter slab are `errc::invalid_argument`.
  [[nodiscard]] result<void> allocate(std::size_t block_bytes, std::size_t n,
                                      std::vector<std::int32_t>& out);
  /// Returns blocks of `block_bytes`; a block freed twice or never allocated aborts.
  void free(std::size_t block_bytes, std::span<const std::int32_t> ids);

  /// Blocks of `block_bytes` that could be allocated now (in its slabs and the free ones).
  std::size_t num_free(std::size_t block_bytes) const;
  /// Blocks of `block_bytes` currently allocated.
  std::size_t num_used(std::size_t block_bytes) const;
  /// Blocks of `block_bytes` that each slab would give once every block in it (of whatever size)
  /// were freed, for the slabs in which `allocated` holds exactly the blocks in use: the room that
  /// freeing those blocks makes for this size. `allocated` maps a block size to block ids.
  std::size_t num_freed_by(std::size_t block_bytes,
                           const std::map<std::size_t, std::vector<std::int32_t>>& allocated) const;

  void* base() const noexcept { return base_; }
  std::size_t bytes() const noexcept { return bytes_; }
  std::size_t slab_bytes() const noexcept { return slab_bytes_; }
  std::size_t num_slabs() const noexcept { return num_slabs_; }
  std::size_t num_free_slabs() const;

  /// How much of the memory held by slabs in use is not in an allocated block: 1 - allocated
  /// bytes / bytes of slabs in use (0 when none is in use). The paper's measure of waste.
  double fragmentation() const;
  /// Bytes in allocated blocks.
  std::size_t allocated_bytes() const;

private:
  // The free blocks of one slab, one bit per block counted from its first id. Up to 128 blocks
  // sit in the slab's entry: a planner's copy of the pool, every step, then allocates nothing
  // per slab. Larger slabs keep their bits on the heap.
  class free_blocks {
  public:
    void fill(std::size_t n);
    std::size_t size() const noexcept { return count_; }
    bool empty() const noexcept { return count_ == 0; }
    bool contains(std::size_t i) const noexcept { return (words()[i / 64] >> (i % 64)) & 1; }
    void insert(std::size_t i) noexcept;
    std::size_t take() noexcept; // the lowest free one (a slab hands its blocks out in order)

  private:
    static constexpr std::size_t inline_words = 2;
    const std::uint64_t* words() const noexcept { return more_.empty() ? small_ : more_.data(); }
    std::uint64_t* words() noexcept { return more_.empty() ? small_ : more_.data(); }
    std::uint64_t small_[inline_words] = {};
    std::vector<std::uint64_t> more_;
    std::size_t count_ = 0;
    std::size_t lowest_ = 0; // no word below this one has a free block
  };
  struct slab {
    std::size_t block_bytes = 0;
    std::uint64_t claimed = 0; // when, in the order slabs were claimed (ties go to the oldest)
    std::size_t first_id = 0;  // its blocks are first_id .. first_id + num_blocks - 1
    std::size_t num_blocks = 0;
    free_blocks free; // of those, the ones not allocated
  };
  // A block size's counts over the slabs serving it (asked at every step's planning).
  struct size_class {
    std::size_t used = 0;
    std::size_t free = 0;
  };

  std::size_t slab_of(std::size_t block_bytes, std::int32_t id) const;
  void release_slab(std::size_t s);
  bool claim_slab(std::size_t block_bytes);

  void* base_;
  std::size_t bytes_;
  std::size_t slab_bytes_;
  std::size_t num_slabs_;
  // Only the slabs in use carry state: a copy (a planner's, every step) costs what is in use,
  // not the size of the region. Sorted by slab index in one vector, not a tree: a copy makes
  // no node per slab, and slabs are claimed and returned far less often than looked up.
  std::vector<std::pair<std::size_t, slab>> in_use_;
  std::vector<std::pair<std::size_t, slab>>::iterator find_in_use(std::size_t s);
  const slab* in_use(std::size_t s) const;
  // Free slabs as sorted, disjoint [first, last) runs: a region of thousands of slabs is a few
  // runs, and the lowest free slab is claimed first.
  std::vector<std::pair<std::size_t, std::size_t>> free_runs_;
  std::size_t num_free_slabs_ = 0;
  // By block size; a pool serves a few sizes (one per KV geometry), so a sorted vector.
  std::vector<std::pair<std::size_t, size_class>> classes_;
  const size_class* class_of(std::size_t block_bytes) const;
  size_class& class_at(std::size_t block_bytes); // added when missing
  std::uint64_t claims_ = 0;
};

} // namespace aeg::gpu
