#include "actors/kv_placement.hpp"

#include "kernels/kv_geometry.hpp"

#include <algorithm>

namespace aeg::actors {

kv_placement::kv_placement(gpu::kv_ledger_copy& device, gpu::kv_ledger_copy& host,
                           std::vector<model_view>& models, seq_views& seqs,
                           std::vector<plan_action>& actions)
    : device_(device), host_(host), models_(models), seqs_(seqs), actions_(actions) {}

// Blocks whose last copy is done go back at once; others once the copy has finished (it is
// still reading or writing them). No step runs while a plan is made, so steps hold none.
void kv_placement::give_back(gpu::kv_ledger_copy& pool, std::size_t block_bytes, seq_view& s) {
  if (s.blocks.empty())
    return; // the ledger stays unchanged (and uncopied)
  if (s.copy == kv_copy::arriving)
    (void)pool.edit().free_after(block_bytes, std::move(s.blocks));
  else
    pool.edit().free(block_bytes, s.blocks);
  s.blocks.clear();
}

// A copy of `s`'s blocks from `from` to `to`: new blocks now (possibly blocks still being copied
// out for their last owner), the old ones free once this copy has read them.
bool kv_placement::transfer(seq_view& s, gpu::kv_ledger_copy& from, gpu::kv_ledger_copy& to,
                            kv_place dest) {
  if (s.copy == kv_copy::failed)
    return false; // its blocks hold nothing worth copying: it is recomputed instead
  const std::size_t bb = models_[s.model].block_bytes;
  std::vector<std::int32_t> blocks;
  std::vector<gpu::kv_ledger::ticket> after;
  if (!to.edit().allocate_after(bb, s.blocks.size(), blocks, after))
    return false;
  (void)from.edit().free_after(bb, std::move(s.blocks));
  s.blocks = std::move(blocks);
  s.where = dest;
  s.copy = kv_copy::arriving;
  return true;
}

bool kv_placement::swap_out(seq_view& s) {
  if (s.where != kv_place::device || !transfer(s, device_, host_, kv_place::host))
    return false;
  actions_.push_back(swap_out_kv{s.id});
  return true;
}

bool kv_placement::swap_in(seq_view& s) {
  if (s.where != kv_place::host || !transfer(s, host_, device_, kv_place::device))
    return false;
  actions_.push_back(swap_in_kv{s.id});
  return true;
}

bool kv_placement::bring_in(seq_view& s) {
  if (swap_in(s))
    return true;
  return make_room(models_[s.model].block_bytes, s.blocks.size(), s.model) && swap_in(s);
}

bool kv_placement::reserve(seq_view& s, std::size_t tokens) {
  if (s.where == kv_place::host)
    return false;
  const std::size_t bb = models_[s.model].block_bytes;
  const std::size_t need = kernels::kv_geometry::blocks_for(tokens);
  if (need <= s.blocks.size())
    return true;
  const std::size_t more = need - s.blocks.size();
  auto take = [&] {
    std::vector<gpu::kv_ledger::ticket> after;
    if (!device_.edit().allocate_after(bb, more, s.blocks, after))
      return false;
    if (!after.empty()) // blocks still being copied out for their last owner: steps wait
      s.copy = kv_copy::arriving;
    s.where = kv_place::device;
    actions_.push_back(reserve_kv{s.id, tokens});
    return true;
  };
  return take() || (make_room(bb, more, s.model) && take());
}

void kv_placement::release(seq_view& s) {
  if (s.where == kv_place::device)
    give_back(device_, models_[s.model].block_bytes, s);
  else if (s.where == kv_place::host)
    give_back(host_, models_[s.model].block_bytes, s);
  s.where = kv_place::none;
  s.kv_tokens = 0;
  s.copy = kv_copy::done;
}

bool kv_placement::can_reserve(std::size_t block_bytes, std::size_t blocks) const {
  return device_->num_available(block_bytes) >= blocks;
}

// Frees device room for `blocks` blocks of `block_bytes` by swapping out sequences outside the
// batch that model `keep_model` serves now (other models', and its own other batches'), least
// recently stepped first. Whether there is room now (blocks still being copied out count: the
// steps that get them wait for the copies on the device).
bool kv_placement::make_room(std::size_t block_bytes, std::size_t blocks, std::size_t keep_model) {
  // (last step, position): the least recently stepped first, ties in the models' order.
  std::vector<std::pair<std::pair<std::uint64_t, std::size_t>, seq_view*>> idle;
  for (std::size_t i = 0; i < models_.size(); ++i)
    for (const auto id : models_[i].running) {
      seq_view& s = seqs_.at(id);
      if (s.where == kv_place::device &&
          (i != keep_model || s.batch != models_[keep_model].turns.current))
        idle.push_back({{s.last_step, idle.size()}, &s});
    }
  std::sort(idle.begin(), idle.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, s] : idle) {
    if (can_reserve(block_bytes, blocks))
      return true;
    if (!swap_out(*s))
      break; // the host pool is full too
  }
  return can_reserve(block_bytes, blocks);
}

} // namespace aeg::actors
