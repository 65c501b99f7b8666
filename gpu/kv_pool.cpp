#include "gpu/kv_pool.hpp"

#include <algorithm>
#include <map>

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
    // The list keeps the order the transfers were enqueued in (oldest first).
    std::vector<moving> pending;
    for (auto& m : moving_)
      (m.complete() ? done : pending).push_back(std::move(m));
    moving_ = std::move(pending);
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
  std::lock_guard lock(mutex_); // see allocate_after
  return slabs_.allocate(block_bytes, n, out);
}

result<void> kv_pool::allocate_after(std::size_t block_bytes, std::size_t n,
                                     std::vector<std::int32_t>& out,
                                     std::vector<std::shared_ptr<event>>& wait_for) {
  reclaim();
  std::lock_guard lock(mutex_); // no plain `allocate` runs meanwhile; frees only add blocks
  const std::size_t have = std::min(slabs_.num_free(block_bytes), n);
  std::size_t on_the_way = 0;
  for (const auto& m : moving_)
    if (m.block_bytes == block_bytes)
      on_the_way += m.ids.size();
  if (have + on_the_way < n)
    return fail(errc::out_of_memory, std::to_string(n) + " KV blocks of " +
                                         std::to_string(block_bytes) + " bytes wanted, " +
                                         std::to_string(have + on_the_way) + " available");
  // Free blocks first; the rest straight from the move list. Those stay allocated in the slabs
  // throughout (they change owner, never become free), so no other allocation can get them.
  const std::size_t first = out.size();
  if (have > 0)
    if (auto r = slabs_.allocate(block_bytes, have, out); !r)
      return r;
  // The oldest transfers first: they finish soonest.
  for (auto it = moving_.begin(); it != moving_.end() && out.size() - first < n;) {
    if (it->block_bytes != block_bytes) {
      ++it;
      continue;
    }
    // Only the blocks wanted: the rest stay on the list, behind the same transfers.
    const std::size_t take = std::min(n - (out.size() - first), it->ids.size());
    const auto from = it->ids.end() - static_cast<std::ptrdiff_t>(take);
    out.insert(out.end(), from, it->ids.end());
    it->ids.erase(from, it->ids.end());
    wait_for.insert(wait_for.end(), it->done.begin(), it->done.end());
    it = it->ids.empty() ? moving_.erase(it) : std::next(it);
  }
  return {};
}

std::size_t kv_pool::num_available(std::size_t block_bytes) const {
  std::size_t n = slabs_.num_free(block_bytes);
  std::map<std::size_t, std::vector<std::int32_t>> other; // moving blocks of other sizes
  std::lock_guard lock(mutex_);
  for (const auto& m : moving_) {
    if (m.block_bytes == block_bytes)
      n += m.ids.size();
    else
      other[m.block_bytes].insert(other[m.block_bytes].end(), m.ids.begin(), m.ids.end());
  }
  return n + slabs_.num_freed_by(block_bytes, other);
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

std::shared_ptr<event> kv_pool::oldest_transfer() const {
  std::lock_guard lock(mutex_);
  for (const auto& m : moving_)
    for (const auto& e : m.done)
      if (e && !e->query())
        return e;
  return nullptr;
}

std::size_t kv_pool::num_moving() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& m : moving_)
    n += m.ids.size();
  return n;
}

} // namespace aeg::gpu
