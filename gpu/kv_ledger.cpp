#include "gpu/kv_ledger.hpp"

#include <algorithm>
#include <map>

namespace aeg::gpu {

kv_ledger::kv_ledger(void* base, std::size_t bytes, std::size_t slab_bytes)
    : slabs_(base, bytes, slab_bytes) {}

result<void> kv_ledger::allocate(std::size_t block_bytes, std::size_t n,
                                 std::vector<std::int32_t>& out) {
  return slabs_.allocate(block_bytes, n, out);
}

result<void> kv_ledger::allocate_after(std::size_t block_bytes, std::size_t n,
                                       std::vector<std::int32_t>& out, std::vector<ticket>& from) {
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
    // Only the blocks wanted: the rest stay on the list, behind the same transfer.
    const std::size_t take = std::min(n - (out.size() - first), it->ids.size());
    const auto cut = it->ids.end() - static_cast<std::ptrdiff_t>(take);
    out.insert(out.end(), cut, it->ids.end());
    it->ids.erase(cut, it->ids.end());
    from.push_back(it->id);
    it = it->ids.empty() ? moving_.erase(it) : std::next(it);
  }
  return {};
}

void kv_ledger::free(std::size_t block_bytes, std::span<const std::int32_t> ids) {
  if (!ids.empty())
    slabs_.free(block_bytes, ids);
}

kv_ledger::ticket kv_ledger::free_after(std::size_t block_bytes, std::vector<std::int32_t> ids) {
  const ticket t = ++next_ticket_;
  if (!ids.empty())
    moving_.push_back({t, block_bytes, std::move(ids)});
  return t;
}

std::size_t kv_ledger::settle(ticket t) {
  const auto it =
      std::find_if(moving_.begin(), moving_.end(), [&](const moving& m) { return m.id == t; });
  if (it == moving_.end())
    return 0;
  const std::size_t n = it->ids.size();
  slabs_.free(it->block_bytes, it->ids);
  moving_.erase(it);
  return n;
}

std::size_t kv_ledger::num_available(std::size_t block_bytes) const {
  std::size_t n = slabs_.num_free(block_bytes);
  std::map<std::size_t, std::vector<std::int32_t>> other; // moving blocks of other sizes
  for (const auto& m : moving_) {
    if (m.block_bytes == block_bytes)
      n += m.ids.size();
    else
      other[m.block_bytes].insert(other[m.block_bytes].end(), m.ids.begin(), m.ids.end());
  }
  return n + slabs_.num_freed_by(block_bytes, other);
}

std::vector<kv_ledger::ticket> kv_ledger::moving_tickets() const {
  std::vector<ticket> out;
  for (const auto& m : moving_)
    out.push_back(m.id);
  return out;
}

std::size_t kv_ledger::num_moving() const {
  std::size_t n = 0;
  for (const auto& m : moving_)
    n += m.ids.size();
  return n;
}

} // namespace aeg::gpu
