#include "gpu/slab_pool.hpp"

#include "coro/assert.hpp"

#include <algorithm>
#include <bit>
#include <iterator>
#include <numeric>

namespace aeg::gpu {

slab_pool::slab_pool(void* base, std::size_t bytes, std::size_t slab_bytes)
    : base_(base), bytes_(bytes), slab_bytes_(slab_bytes),
      num_slabs_(slab_bytes > 0 ? bytes / slab_bytes : 0) {
  AEG_ASSERT(slab_bytes > 0, "slab_pool: slabs need a size");
  if (num_slabs_ > 0)
    free_runs_.emplace_back(0, num_slabs_);
  num_free_slabs_ = num_slabs_;
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

// Σ ids_in(s).count() over slabs [first, last), in closed form: the blocks between the run's
// ends, less one at each inner slab boundary that falls inside a block (s·slab_bytes not a
// multiple of b, which holds unless s is a multiple of b / gcd(slab_bytes, b)).
std::size_t blocks_in_run(std::size_t first, std::size_t last, std::size_t slab_bytes,
                          std::size_t b) {
  if (last <= first)
    return 0;
  const std::size_t m = b / std::gcd(slab_bytes, b);
  const std::size_t inner = last - first - 1;
  const std::size_t aligned = (last - 1) / m - first / m;
  return last * slab_bytes / b - (first * slab_bytes + b - 1) / b - (inner - aligned);
}

// The first entry of a vector of (key, value) pairs sorted by key whose key is not below `key`.
template <class Pairs>
auto lower_by_key(Pairs& v, std::size_t key) {
  return std::lower_bound(v.begin(), v.end(), key,
                          [](const auto& entry, std::size_t k) { return entry.first < k; });
}

} // namespace

void slab_pool::free_blocks::fill(std::size_t n) {
  const std::size_t num_words = (n + 63) / 64;
  if (num_words > inline_words)
    more_.assign(num_words, 0);
  std::uint64_t* w = words();
  for (std::size_t i = 0; i < n / 64; ++i)
    w[i] = ~std::uint64_t{0};
  if (n % 64 != 0)
    w[n / 64] = (std::uint64_t{1} << (n % 64)) - 1;
  count_ = n;
  lowest_ = 0;
}

void slab_pool::free_blocks::insert(std::size_t i) noexcept {
  words()[i / 64] |= std::uint64_t{1} << (i % 64);
  ++count_;
  lowest_ = std::min(lowest_, i / 64);
}

std::size_t slab_pool::free_blocks::take() noexcept {
  std::uint64_t* w = words();
  while (w[lowest_] == 0)
    ++lowest_;
  const auto bit = static_cast<std::size_t>(std::countr_zero(w[lowest_]));
  w[lowest_] &= w[lowest_] - 1;
  --count_;
  return lowest_ * 64 + bit;
}

std::vector<std::pair<std::size_t, slab_pool::slab>>::iterator
slab_pool::find_in_use(std::size_t s) {
  return lower_by_key(in_use_, s);
}

const slab_pool::slab* slab_pool::in_use(std::size_t s) const {
  const auto at = lower_by_key(in_use_, s);
  return at != in_use_.end() && at->first == s ? &at->second : nullptr;
}

const slab_pool::size_class* slab_pool::class_of(std::size_t b) const {
  const auto at = lower_by_key(classes_, b);
  return at != classes_.end() && at->first == b ? &at->second : nullptr;
}

slab_pool::size_class& slab_pool::class_at(std::size_t b) {
  auto at = lower_by_key(classes_, b);
  if (at == classes_.end() || at->first != b)
    at = classes_.insert(at, {b, size_class{}});
  return at->second;
}

bool slab_pool::claim_slab(std::size_t b) {
  if (free_runs_.empty())
    return false;
  const std::size_t s = free_runs_.front().first++;
  if (free_runs_.front().first == free_runs_.front().second)
    free_runs_.erase(free_runs_.begin());
  --num_free_slabs_;
  const auto [first, last] = ids_in(s, slab_bytes_, b);
  slab& sl = in_use_.insert(find_in_use(s), {s, slab{}})->second;
  sl.block_bytes = b;
  sl.first_id = first;
  sl.num_blocks = last > first ? last - first : 0;
  sl.free.fill(sl.num_blocks);
  sl.claimed = claims_++;
  class_at(b).free += sl.num_blocks;
  return true;
}

void slab_pool::release_slab(std::size_t s) {
  auto next = std::lower_bound(free_runs_.begin(), free_runs_.end(), std::pair{s, s});
  const bool joins_prev = next != free_runs_.begin() && std::prev(next)->second == s;
  const bool joins_next = next != free_runs_.end() && next->first == s + 1;
  if (joins_prev && joins_next) {
    std::prev(next)->second = next->second;
    free_runs_.erase(next);
  } else if (joins_prev) {
    std::prev(next)->second = s + 1;
  } else if (joins_next) {
    next->first = s;
  } else {
    free_runs_.insert(next, {s, s + 1});
  }
  ++num_free_slabs_;
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
  const size_class* counted = class_of(b);
  const std::size_t available = counted != nullptr ? counted->free : 0;
  std::size_t claimable = 0;
  for (std::size_t i = 0; i < free_runs_.size() && available + claimable < n; ++i)
    claimable += blocks_in_run(free_runs_[i].first, free_runs_[i].second, slab_bytes_, b);
  if (available + claimable < n)
    return fail(errc::out_of_memory, std::to_string(n) + " KV blocks of " + std::to_string(b) +
                                         " bytes wanted, " + std::to_string(available + claimable) +
                                         " available");
  std::size_t taken = 0;
  while (taken < n) {
    // The fullest slab with room first: it keeps the others free to return.
    slab* best = nullptr;
    for (auto& [s, candidate] : in_use_)
      if (candidate.block_bytes == b && !candidate.free.empty() &&
          (best == nullptr || candidate.free.size() < best->free.size() ||
           (candidate.free.size() == best->free.size() && candidate.claimed < best->claimed)))
        best = &candidate;
    if (best == nullptr) {
      AEG_ASSERT(claim_slab(b), "slab_pool: counted slabs vanished");
      continue;
    }
    slab& sl = *best;
    for (; taken < n && !sl.free.empty(); ++taken)
      out.push_back(static_cast<std::int32_t>(sl.first_id + sl.free.take()));
  }
  auto& cls = class_at(b);
  cls.used += n;
  cls.free -= n;
  return {};
}

void slab_pool::free(std::size_t b, std::span<const std::int32_t> ids) {
  AEG_ASSERT(class_of(b) != nullptr, "slab_pool: freeing blocks of a size never allocated");
  auto& cls = class_at(b);
  for (const auto id : ids) {
    AEG_ASSERT(id >= 0, "slab_pool: negative block id");
    const std::size_t s = slab_of(b, id);
    const auto at = find_in_use(s);
    AEG_ASSERT(at != in_use_.end() && at->first == s && at->second.block_bytes == b,
               "slab_pool: block freed into a slab of another size");
    slab& sl = at->second;
    const std::size_t i = static_cast<std::size_t>(id) - sl.first_id;
    AEG_ASSERT(static_cast<std::size_t>(id) >= sl.first_id && i < sl.num_blocks &&
                   !sl.free.contains(i),
               "slab_pool: KV block freed twice");
    sl.free.insert(i);
    --cls.used;
    ++cls.free;
    if (sl.free.size() == sl.num_blocks) { // empty: the slab goes back
      cls.free -= sl.num_blocks;
      in_use_.erase(at);
      release_slab(s);
    }
  }
}

std::size_t slab_pool::num_free(std::size_t b) const {
  if (b == 0 || b > slab_bytes_ / 4)
    return 0; // a size `allocate` refuses: none can be had
  std::size_t n = 0;
  if (const size_class* cls = class_of(b))
    n += cls->free;
  for (const auto& [first, last] : free_runs_)
    n += blocks_in_run(first, last, slab_bytes_, b);
  return n;
}

std::size_t slab_pool::num_used(std::size_t b) const {
  const size_class* cls = class_of(b);
  return cls == nullptr ? 0 : cls->used;
}

std::size_t
slab_pool::num_freed_by(std::size_t b,
                        const std::map<std::size_t, std::vector<std::int32_t>>& allocated) const {
  std::map<std::size_t, std::size_t> count; // slab -> blocks of `allocated` in it
  for (const auto& [size, ids] : allocated)
    for (const auto id : ids) {
      const std::size_t s = slab_of(size, id);
      if (const slab* sl = in_use(s); sl != nullptr && sl->block_bytes == size)
        ++count[s];
    }
  std::size_t n = 0;
  for (const auto& [s, k] : count) {
    const slab& sl = *in_use(s);
    if (k == sl.num_blocks - sl.free.size())
      n += ids_in(s, slab_bytes_, b).count();
  }
  return n;
}

std::size_t slab_pool::num_free_slabs() const {
  return num_free_slabs_;
}

std::size_t slab_pool::allocated_bytes() const {
  std::size_t n = 0;
  for (const auto& [b, cls] : classes_)
    n += b * cls.used;
  return n;
}

double slab_pool::fragmentation() const {
  const std::size_t allocated = allocated_bytes();
  const std::size_t in_use = in_use_.size() * slab_bytes_;
  return in_use == 0 ? 0.0 : 1.0 - static_cast<double>(allocated) / static_cast<double>(in_use);
}

} // namespace aeg::gpu
