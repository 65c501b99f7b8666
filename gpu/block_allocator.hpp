#pragma once

#include "coro/error.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace aeg::gpu {

/// Hands out the ids of `num_blocks` fixed-size blocks (of a KV pool). Every id is either free or
/// held by exactly one owner; freeing an id twice is a bug and aborts. Not thread-safe: one actor
/// owns it.
class block_allocator {
public:
  explicit block_allocator(std::size_t num_blocks);

  /// Appends `n` free ids to `out`, or takes none and returns `errc::out_of_memory`.
  [[nodiscard]] result<void> allocate(std::size_t n, std::vector<std::int32_t>& out);
  /// Returns `ids` to the pool.
  void free(std::span<const std::int32_t> ids);

  std::size_t num_blocks() const noexcept { return used_.size(); }
  std::size_t num_free() const noexcept { return free_.size(); }
  std::size_t num_used() const noexcept { return num_blocks() - num_free(); }

private:
  std::vector<std::int32_t> free_; // a stack: recently freed blocks are reused first (warm)
  std::vector<bool> used_;
};

} // namespace aeg::gpu
