#include "gpu/slab_pool.hpp"

#include "coro/assert.hpp"

#include <algorithm>

namespace aeg::gpu {

slab_pool::slab_pool(void* base, std::size_t bytes, std::size_t slab_bytes)
    : base_(base), bytes_(bytes), slab_bytes_(slab_bytes) {
  AEG_ASSERT(slab_bytes > 0, "slab_pool: slabs need a size");
  const std::size_t n = bytes / slab_bytes;
  slabs_.resize(n);
  used_.resize(n);
  free_slabs_.reserve(n);
  for (std::size_t i = n; i-- > 0;)
    free_slabs_.push_back(i);
}

namespace {

// The ids of the blocks of size `b` that lie wholly inside slab `s`: from the first multiple of
// `b` at or after the slab's start to the last that ends by its end.
struct id_range {
  std::size_t first, last;
  std::size_t count() const { return last > first ? last - first : 0; }
};
id_range ids_in(std::size_t s, std::size_t slab_bytes, std::size_t b) {
  const std::size_t start = s * slab_bytes, end = start + slab_bytes;
  return {(start + b - 1) / b, end / b};
}

} // namespace

bool slab_pool::claim_slab(std::size_t b) {
  if (free_slabs_.empty())
    return false;
  const std::size_t s = free_slabs_.back();
  free_slabs_.pop_back();
  const auto [first, last] = ids_in(s, slab_bytes_, b);
  slab& sl = slabs_[s];
  sl.block_bytes = b;
  sl.num_blocks = last > first ? last - first : 0;
  sl.free_ids.clear();
  for (std::size_t id = last; id-- > first;)
    sl.free_ids.push_back(static_cast<std::int32_t>(id));
  used_[s].assign(sl.num_blocks, false);
  classes_[b].slabs.push_back(s);
  return true;
}

std::size_t slab_pool::slab_of(std::size_t b, std::int32_t id) const {
  return static_cast<std::size_t>(id) * b / slab_bytes_;
}

result<void> slab_pool::allocate(std::size_t b, std::size_t n, std::vector<std::int32_t>& out) {
  // At least 4 blocks per slab: every slab then holds some wherever it starts.
  if (b == 0 || b > slab_bytes_ / 4)
    return fail(errc::invalid_argument,
                "KV blocks of " + std::to_string(b) + " bytes are too large for slabs of " +
                    std::to_string(slab_bytes_) + " (4 blocks at least); use larger slabs");
  // Enough blocks in this size's slabs plus claimable free slabs? (All or nothing.)
  std::size_t available = 0;
  if (auto it = classes_.find(b); it != classes_.end())
    for (auto s : it->second.slabs)
      available += slabs_[s].free_ids.size();
  std::size_t claimable = 0;
  for (std::size_t i = 0; i < free_slabs_.size() && available + claimable < n; ++i)
    claimable += ids_in(free_slabs_[free_slabs_.size() - 1 - i], slab_bytes_, b).count();
  if (available + claimable < n)
    return fail(errc::out_of_memory, std::to_string(n) + " KV blocks of " + std::to_string(b) +
                                         " bytes wanted, " + std::to_string(available + claimable) +
                                         " available");
  auto& cls = classes_[b];
  std::size_t taken = 0;
  while (taken < n) {
    // The fullest slab with room first: it keeps the others free to return.
    std::size_t best = slabs_.size();
    for (auto s : cls.slabs)
      if (!slabs_[s].free_ids.empty() &&
          (best == slabs_.size() || slabs_[s].free_ids.size() < slabs_[best].free_ids.size()))
        best = s;
    if (best == slabs_.size()) {
      AEG_ASSERT(claim_slab(b), "slab_pool: counted slabs vanished");
      continue;
    }
    slab& sl = slabs_[best];
    while (taken < n && !sl.free_ids.empty()) {
      const auto id = sl.free_ids.back();
      sl.free_ids.pop_back();
      used_[best][static_cast<std::size_t>(id) - ids_in(best, slab_bytes_, b).first] = true;
      out.push_back(id);
      ++taken;
    }
  }
  cls.used += n;
  return {};
}

void slab_pool::free(std::size_t b, std::span<const std::int32_t> ids) {
  auto it = classes_.find(b);
  AEG_ASSERT(it != classes_.end(), "slab_pool: freeing blocks of a size never allocated");
  auto& cls = it->second;
  for (const auto id : ids) {
    AEG_ASSERT(id >= 0, "slab_pool: negative block id");
    const std::size_t s = slab_of(b, id);
    AEG_ASSERT(s < slabs_.size() && slabs_[s].block_bytes == b,
               "slab_pool: block freed into a slab of another size");
    const std::size_t index = static_cast<std::size_t>(id) - ids_in(s, slab_bytes_, b).first;
    AEG_ASSERT(index < used_[s].size() && used_[s][index], "slab_pool: KV block freed twice");
    used_[s][index] = false;
    slab& sl = slabs_[s];
    sl.free_ids.push_back(id);
    --cls.used;
    if (sl.free_ids.size() == sl.num_blocks) { // empty: the slab goes back
      sl.block_bytes = 0;
      sl.free_ids.clear();
      used_[s].clear();
      std::erase(cls.slabs, s);
      free_slabs_.push_back(s);
    }
  }
}

std::size_t slab_pool::num_free(std::size_t b) const {
  std::size_t n = 0;
  if (auto it = classes_.find(b); it != classes_.end())
    for (auto s : it->second.slabs)
      n += slabs_[s].free_ids.size();
  for (auto s : free_slabs_)
    n += ids_in(s, slab_bytes_, b).count();
  return n;
}

std::size_t slab_pool::num_used(std::size_t b) const {
  auto it = classes_.find(b);
  return it == classes_.end() ? 0 : it->second.used;
}

std::size_t
slab_pool::num_freed_by(std::size_t b,
                        const std::map<std::size_t, std::vector<std::int32_t>>& allocated) const {
  std::map<std::size_t, std::size_t> count; // slab -> blocks of `allocated` in it
  for (const auto& [size, ids] : allocated)
    for (const auto id : ids) {
      const std::size_t s = slab_of(size, id);
      if (s < slabs_.size() && slabs_[s].block_bytes == size)
        ++count[s];
    }
  std::size_t n = 0;
  for (const auto& [s, k] : count) {
    const slab& sl = slabs_[s];
    if (k == sl.num_blocks - sl.free_ids.size())
      n += ids_in(s, slab_bytes_, b).count();
  }
  return n;
}

std::size_t slab_pool::num_free_slabs() const {
  return free_slabs_.size();
}

std::size_t slab_pool::allocated_bytes() const {
  std::size_t n = 0;
  for (const auto& [b, cls] : classes_)
    n += b * cls.used;
  return n;
}

double slab_pool::fragmentation() const {
  const std::size_t allocated = allocated_bytes();
  const std::size_t in_use = (slabs_.size() - free_slabs_.size()) * slab_bytes_;
  return in_use == 0 ? 0.0 : 1.0 - static_cast<double>(allocated) / static_cast<double>(in_use);
}

} // namespace aeg::gpu
