#include "gpu/kv_pool.hpp"

#include <algorithm>

namespace aeg::gpu {

kv_pool::kv_pool(buffer memory, std::size_t slab_bytes)
    : memory_(std::move(memory)), base_(memory_.as<std::byte>()), bytes_(memory_.bytes()),
      slab_bytes_(slab_bytes), ledger_(memory_.data(), memory_.bytes(), slab_bytes) {}

namespace {

bool all_complete(const std::vector<std::shared_ptr<event>>& done) {
  return std::all_of(done.begin(), done.end(), [](const auto& e) { return e->query(); });
}

} // namespace

std::size_t kv_pool::reclaim() {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (auto it = transfers_.begin(); it != transfers_.end();)
    if (all_complete(it->second)) {
      n += ledger_.settle(it->first);
      snapshot_.reset();
      it = transfers_.erase(it);
    } else {
      ++it;
    }
  return n;
}

result<void> kv_pool::allocate(std::size_t block_bytes, std::size_t n,
                               std::vector<std::int32_t>& out) {
  reclaim();
  std::lock_guard lock(mutex_);
  snapshot_.reset();
  return ledger_.allocate(block_bytes, n, out);
}

result<void> kv_pool::allocate_after(std::size_t block_bytes, std::size_t n,
                                     std::vector<std::int32_t>& out,
                                     std::vector<std::shared_ptr<event>>& wait_for) {
  reclaim();
  std::lock_guard lock(mutex_);
  std::vector<kv_ledger::ticket> from;
  snapshot_.reset();
  AEG_TRY(ledger_.allocate_after(block_bytes, n, out, from));
  const auto still_moving = ledger_.moving_tickets();
  for (const auto t : from) {
    auto it = transfers_.find(t);
    if (it == transfers_.end())
      continue;
    wait_for.insert(wait_for.end(), it->second.begin(), it->second.end());
    // An entry the allocation emptied is gone from the move list: so are its events.
    if (std::find(still_moving.begin(), still_moving.end(), t) == still_moving.end())
      transfers_.erase(it);
  }
  return {};
}

std::size_t kv_pool::num_available(std::size_t block_bytes) const {
  std::lock_guard lock(mutex_);
  return ledger_.num_available(block_bytes);
}

void kv_pool::free(std::size_t block_bytes, std::span<const std::int32_t> ids) {
  std::lock_guard lock(mutex_);
  snapshot_.reset();
  ledger_.free(block_bytes, ids);
}

void kv_pool::free_after(std::size_t block_bytes, std::vector<std::int32_t> ids,
                         std::vector<std::shared_ptr<event>> done) {
  if (ids.empty())
    return;
  std::erase_if(done, [](const auto& e) { return !e || e->query(); });
  if (done.empty())
    return free(block_bytes, ids);
  std::lock_guard lock(mutex_);
  snapshot_.reset();
  transfers_.emplace(ledger_.free_after(block_bytes, std::move(ids)), std::move(done));
}

std::shared_ptr<event> kv_pool::oldest_transfer() const {
  std::lock_guard lock(mutex_);
  for (const auto t : ledger_.moving_tickets())
    if (auto it = transfers_.find(t); it != transfers_.end())
      for (const auto& e : it->second)
        if (e && !e->query())
          return e;
  return nullptr;
}

std::shared_ptr<const kv_ledger> kv_pool::snapshot() {
  reclaim();
  std::lock_guard lock(mutex_);
  if (!snapshot_)
    snapshot_ = std::make_shared<kv_ledger>(ledger_);
  return snapshot_;
}

std::size_t kv_pool::num_moving() const {
  std::lock_guard lock(mutex_);
  return ledger_.num_moving();
}

std::size_t kv_pool::num_free(std::size_t block_bytes) const {
  std::lock_guard lock(mutex_);
  return ledger_.slabs().num_free(block_bytes);
}

std::size_t kv_pool::num_used(std::size_t block_bytes) const {
  std::lock_guard lock(mutex_);
  return ledger_.slabs().num_used(block_bytes);
}

std::size_t kv_pool::allocated_bytes() const {
  std::lock_guard lock(mutex_);
  return ledger_.slabs().allocated_bytes();
}

double kv_pool::fragmentation() const {
  std::lock_guard lock(mutex_);
  return ledger_.slabs().fragmentation();
}

std::size_t kv_pool::num_free_slabs() const {
  std::lock_guard lock(mutex_);
  return ledger_.slabs().num_free_slabs();
}

} // namespace aeg::gpu
