#pragma once

#include "coro/error.hpp"
#include "gpu/slab_pool.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace aeg::gpu {

/// The accounting of a KV pool, with no memory and no events: which blocks of which size are in
/// use, free, or on the move list (freed while a transfer still reads or writes them). `kv_pool`
/// keeps one under its lock and pairs each move-list entry (a `ticket`) with the events of its
/// transfer; a copy of it (`kv_pool::ledger`) lets a planner try out a step's allocations and
/// frees with exactly the pool's rules, touching nothing. Plain value, not thread-safe.
class kv_ledger {
public:
  /// Names an entry of the move list: one transfer's freed blocks.
  using ticket = std::uint64_t;

  /// A ledger of `bytes` in slabs of `slab_bytes`, blocks addressed from `base` (not owned; null
  /// for a ledger that only counts).
  kv_ledger(void* base, std::size_t bytes, std::size_t slab_bytes);

  /// Appends `n` free blocks of `block_bytes` to `out` (moved blocks are not free until settled);
  /// all or nothing: `errc::out_of_memory` when too few are free.
  [[nodiscard]] result<void> allocate(std::size_t block_bytes, std::size_t n,
                                      std::vector<std::int32_t>& out);
  /// Like `allocate`, but when free blocks run short it also takes blocks of `block_bytes` from
  /// the move list (oldest entries first), appending the tickets they came from to `from`: their
  /// transfers must finish before the new owner writes them. All or nothing.
  [[nodiscard]] result<void> allocate_after(std::size_t block_bytes, std::size_t n,
                                            std::vector<std::int32_t>& out,
                                            std::vector<ticket>& from);
  /// Returns blocks nothing uses any more.
  void free(std::size_t block_bytes, std::span<const std::int32_t> ids);
  /// Puts blocks on the move list (a transfer still uses them); free once `settle` is called
  /// with the ticket returned.
  ticket free_after(std::size_t block_bytes, std::vector<std::int32_t> ids);
  /// The transfer of `t` has finished: its blocks still on the move list are free. Returns how
  /// many; an unknown (already emptied) ticket gives 0.
  std::size_t settle(ticket t);

  /// Blocks of `block_bytes` free now or on their way: free, on the move list, or in slabs of
  /// other sizes whose every block is on the move list (those return as whole slabs once their
  /// transfers finish). `allocate_after` can give the first two at once.
  std::size_t num_available(std::size_t block_bytes) const;
  /// The move list's tickets, oldest first.
  std::vector<ticket> moving_tickets() const;
  /// Blocks on the move list.
  std::size_t num_moving() const;
  /// Whether anything is on the move list (room that comes back when transfers finish).
  bool has_moving() const noexcept { return !moving_.empty(); }

  const slab_pool& slabs() const noexcept { return slabs_; }
  std::size_t bytes() const noexcept { return slabs_.bytes(); }
  /// The most blocks of `block_bytes` the pool can ever hold (whole slabs of them).
  std::size_t capacity(std::size_t block_bytes) const noexcept {
    return slabs_.num_slabs() * (slabs_.slab_bytes() / block_bytes);
  }

private:
  struct moving {
    ticket id;
    std::size_t block_bytes;
    std::vector<std::int32_t> ids;
  };
  slab_pool slabs_;
  std::vector<moving> moving_; // in the order the transfers were enqueued (oldest first)
  ticket next_ticket_ = 0;
};

} // namespace aeg::gpu
