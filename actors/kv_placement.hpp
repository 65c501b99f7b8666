#pragma once

#include "actors/step_plan.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace aeg::actors {

/// Where KV blocks go while a step is planned: the device and host pools' ledgers (copies of
/// their accounting, the planner's to change), the planner's scratch copy of the sequences, and
/// the actions that move blocks, recorded as they are decided. Every choice here is tried on the
/// ledgers with the pools' own rules, so a plan the instance applies finds the room the planner
/// counted (only the host pool, shared with other instances, can change meanwhile).
class kv_placement {
public:
  kv_placement(gpu::kv_ledger_copy& device, gpu::kv_ledger_copy& host,
               std::vector<model_view>& models, seq_views& seqs, std::vector<plan_action>& actions);

  /// Moves `s`'s KV (on the device) to the host. False, changing nothing, when the host pool has
  /// no room or the KV's last copy failed.
  bool swap_out(seq_view& s);
  /// Moves `s`'s KV (on the host) back to the device, first swapping out idle sequences (least
  /// recently stepped first) when the device has no room. Never touches the batch that `s`'s
  /// model serves now.
  bool bring_in(seq_view& s);
  /// Gives `s` (no KV yet, or on the device) device blocks for `tokens` tokens, making room as
  /// `bring_in` does. False, changing nothing of `s`, when there is none.
  bool reserve(seq_view& s, std::size_t tokens);
  /// Frees `s`'s blocks wherever they are (once transfers still using them finish).
  void release(seq_view& s);

  /// Whether the device pool has `blocks` blocks of `block_bytes` free or on their way back.
  bool can_reserve(std::size_t block_bytes, std::size_t blocks) const;
  /// The most blocks of `block_bytes` the device pool can ever hold.
  std::size_t capacity(std::size_t block_bytes) const { return device_->capacity(block_bytes); }
  /// Whether device blocks are on their way back from transfers (room worth awaiting).
  bool room_on_its_way() const noexcept { return device_->has_moving(); }
  std::size_t device_bytes() const noexcept { return device_->bytes(); }
  std::size_t host_bytes() const noexcept { return host_->bytes(); }

private:
  bool swap_in(seq_view& s);
  bool transfer(seq_view& s, gpu::kv_ledger_copy& from, gpu::kv_ledger_copy& to, kv_place dest);
  bool make_room(std::size_t block_bytes, std::size_t blocks, std::size_t keep_model);
  static void give_back(gpu::kv_ledger_copy& pool, std::size_t block_bytes, seq_view& s);

  gpu::kv_ledger_copy &device_, &host_;
  std::vector<model_view>& models_;
  seq_views& seqs_;
  std::vector<plan_action>& actions_;
};

} // namespace aeg::actors
