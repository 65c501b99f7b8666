#include "gpu/block_allocator.hpp"

#include "coro/assert.hpp"

namespace aeg::gpu {

block_allocator::block_allocator(std::size_t num_blocks) : used_(num_blocks, false) {
  free_.reserve(num_blocks);
  for (std::size_t i = num_blocks; i-- > 0;)
    free_.push_back(static_cast<std::int32_t>(i));
}

result<void> block_allocator::allocate(std::size_t n, std::vector<std::int32_t>& out) {
  if (n > free_.size())
    return fail(errc::out_of_memory, std::to_string(n) + " KV blocks wanted, " +
                                         std::to_string(free_.size()) + " of " +
                                         std::to_string(num_blocks()) + " free");
  for (std::size_t i = 0; i < n; ++i) {
    const auto id = free_.back();
    free_.pop_back();
    used_[static_cast<std::size_t>(id)] = true;
    out.push_back(id);
  }
  return {};
}

void block_allocator::free(std::span<const std::int32_t> ids) {
  for (const auto id : ids) {
    AEG_ASSERT(id >= 0 && static_cast<std::size_t>(id) < used_.size(), "KV block id out of range");
    AEG_ASSERT(used_[static_cast<std::size_t>(id)], "KV block freed twice");
    used_[static_cast<std::size_t>(id)] = false;
    free_.push_back(id);
  }
}

} // namespace aeg::gpu
