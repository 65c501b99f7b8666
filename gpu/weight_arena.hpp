#pragma once

#include "coro/error.hpp"
#include "gpu/device.hpp"

#include <cstddef>

namespace aeg::gpu {

/// Device memory for model weights, taken once at start-up: the active model sits at one end,
/// the next one (prefetched, or being scaled up) at the other, so that both fit side by side
/// when their sizes allow and switching never copies weights on the device. Scaling down is
/// forgetting an offset: no free, no fragmentation, no garbage collection. Used by one owner.
class weight_arena {
public:
  explicit weight_arena(buffer memory);

  /// Places a model of `bytes` at the end opposite the active one, replacing whatever was staged
  /// there (its copies must have finished). `errc::out_of_memory` when it does not fit beside
  /// the active model; scale that down first.
  [[nodiscard]] result<std::byte*> stage(std::size_t bytes);
  /// Whether a model of `bytes` fits beside the active one (`stage` would place it).
  bool fits_beside_active(std::size_t bytes) const noexcept;
  /// The staged model becomes the active one; the previous active model's space is released.
  void activate();
  /// The staged and the active model trade places: both stay resident (nothing moves).
  void swap() noexcept;
  /// Forgets the staged model (its copies must have finished).
  void drop_staged() noexcept;
  /// Forgets the active model (scale-down).
  void drop_active() noexcept;

  std::byte* active() const noexcept { return active_ == slot::none ? nullptr : at(active_); }
  std::byte* staged() const noexcept { return staged_ == slot::none ? nullptr : at(staged_); }
  std::size_t active_bytes() const noexcept { return active_bytes_; }
  std::size_t staged_bytes() const noexcept { return staged_bytes_; }
  std::size_t capacity() const noexcept { return memory_.bytes(); }
  /// Bytes neither model holds.
  std::size_t free_bytes() const noexcept { return capacity() - active_bytes_ - staged_bytes_; }

private:
  enum class slot { none, low, high };
  std::byte* at(slot s) const noexcept;

  buffer memory_;
  slot active_ = slot::none, staged_ = slot::none;
  std::size_t active_bytes_ = 0, staged_bytes_ = 0;
};

} // namespace aeg::gpu
