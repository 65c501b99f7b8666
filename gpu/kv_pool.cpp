#include "gpu/kv_pool.hpp"

#include <algorithm>

namespace aeg::gpu {

kv_pool::kv_pool(buffer memory, std::size_t slab_bytes)
    : memory_(std::move(memory)), base_(memory_.as<std::byte>()),
      slabs_(memory_.data(), memory_.bytes(), slab_bytes) {}

bool kv_pool::moving::complete() const {
  return std::all_of(done.begin(), done.end(), [](const auto& e) { return e->query(); });
}

std::size_t kv_pool::reclaim() {
  std::vector<moving> done;
  {
    std::lock_guard lock(mutex_);
    auto it = std::partition(moving_.begin(), moving_.end(),
                             [](const moving& m) { return !m.complete(); });
    done.assign(std::make_move_iterator(it), std::make_move_iterator(moving_.end()));
    moving_.erase(it, moving_.end());
  }
  std::size_t n = 0;
  for (auto& m : done) {
    slabs_.free(m.block_bytes, m.ids);
    n += m.ids.size();
  }
  return n;
}

result<void> kv_pool::allocate(std::size_t block_bytes, std::size_t n,
                               std::vector<std::int32_t>& out) {
  reclaim();
  return slabs_.allocate(block_bytes, n, out);
}

void kv_pool::free(std::size_t block_bytes, std::span<const std::int32_t> ids) {
  if (!ids.empty())
    slabs_.free(block_bytes, ids);
}

void kv_pool::free_after(std::size_t block_bytes, std::vector<std::int32_t> ids,
                         std::vector<std::shared_ptr<event>> done) {
  if (ids.empty())
    return;
  std::erase_if(done, [](const auto& e) { return !e || e->query(); });
  if (done.empty())
    return free(block_bytes, ids);
  std::lock_guard lock(mutex_);
  moving_.push_back({block_bytes, std::move(ids), std::move(done)});
}

std::size_t kv_pool::num_moving() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& m : moving_)
    n += m.ids.size();
  return n;
}

} // namespace aeg::gpu
