#pragma once

#include "coro/error.hpp"
#include "gpu/device.hpp"
#include "gpu/kv_ledger.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace aeg::gpu {

/// The KV cache memory of one place: a device's unified pool or the pinned host pool that several
/// instances share. It owns its memory, hands out blocks of any KV geometry's size through slabs
/// (slab_pool), and keeps a move list: blocks that a transfer still reads or writes are freed
/// with the event of that transfer. `allocate` reuses them only once it has completed;
/// `allocate_after` may take them sooner, handing back the events its caller's stream must wait
/// for before writing, so that no copy ever overwrites memory another copy is using and no
/// thread waits either. Thread-safe.
class kv_pool {
public:
  /// A pool over `memory` in slabs of `slab_bytes`.
  kv_pool(buffer memory, std::size_t slab_bytes);

  /// Appends `n` blocks of `block_bytes` to `out`, first reclaiming moved blocks whose transfer
  /// has finished; or takes none and returns `errc::out_of_memory`.
  [[nodiscard]] result<void> allocate(std::size_t block_bytes, std::size_t n,
                                      std::vector<std::int32_t>& out);
  /// Like `allocate`, but when free blocks run short it also takes blocks of `block_bytes` from
  /// the move list whose transfers are still running (oldest first), appending their events to
  /// `wait_for`: the stream that writes the blocks must wait for those events first. All or
  /// nothing, as `allocate`.
  [[nodiscard]] result<void> allocate_after(std::size_t block_bytes, std::size_t n,
                                            std::vector<std::int32_t>& out,
                                            std::vector<std::shared_ptr<event>>& wait_for);
  /// Blocks of `block_bytes` free now or on their way: free, on the move list, or in slabs of
  /// other sizes whose every block is on the move list (those return as whole slabs once their
  /// transfers complete). `allocate_after` can give the first two at once.
  std::size_t num_available(std::size_t block_bytes) const;
  /// Returns blocks nothing uses any more.
  void free(std::size_t block_bytes, std::span<const std::int32_t> ids);
  /// Returns blocks once every event in `done` has completed (the work still touching them).
  void free_after(std::size_t block_bytes, std::vector<std::int32_t> ids,
                  std::vector<std::shared_ptr<event>> done);

  /// Moves finished transfers' blocks from the move list to the free blocks; returns how many.
  std::size_t reclaim();
  /// An event of the oldest transfer still holding blocks on the move list (null: none), for
  /// an owner with nothing to do until room comes back.
  std::shared_ptr<event> oldest_transfer() const;

  /// Address of block `id` of `block_bytes`.
  std::byte* block(std::size_t block_bytes, std::int32_t id) const noexcept {
    return base_ + static_cast<std::size_t>(id) * block_bytes;
  }
  void* base() const noexcept { return base_; }
  std::size_t bytes() const noexcept { return bytes_; }
  buffer::space where() const noexcept { return memory_.where(); }

  std::size_t num_free(std::size_t block_bytes) const;
  std::size_t num_used(std::size_t block_bytes) const;
  /// Blocks waiting on the move list.
  std::size_t num_moving() const;
  std::size_t allocated_bytes() const;
  /// Unused share of the slabs in use (see slab_pool::fragmentation).
  double fragmentation() const;
  std::size_t num_free_slabs() const;
  std::size_t num_slabs() const noexcept { return bytes_ / slab_bytes_; }
  std::size_t slab_bytes() const noexcept { return slab_bytes_; }
  /// The most blocks of `block_bytes` the pool can ever hold (whole slabs of them).
  std::size_t capacity(std::size_t block_bytes) const noexcept {
    return num_slabs() * (slab_bytes() / block_bytes);
  }
  /// The pool's accounting after reclaiming finished transfers, what a planner tries its
  /// allocations and frees on (every entry still on its move list counts as in flight): a shared,
  /// read-only snapshot, taken again only after the pool has changed, so planners that change
  /// nothing copy nothing.
  std::shared_ptr<const kv_ledger> snapshot();

private:
  buffer memory_;
  std::byte* base_;
  std::size_t bytes_, slab_bytes_;
  mutable std::mutex mutex_;
  kv_ledger ledger_;
  std::shared_ptr<const kv_ledger> snapshot_; // of `ledger_` as it is now; null once it changes
  // The events of each move-list entry's transfer.
  std::map<kv_ledger::ticket, std::vector<std::shared_ptr<event>>> transfers_;
};

} // namespace aeg::gpu
