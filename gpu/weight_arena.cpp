#include "gpu/weight_arena.hpp"

#include "coro/assert.hpp"

#include <utility>

namespace aeg::gpu {

namespace {
constexpr std::size_t alignment = 256;
std::size_t align_up(std::size_t x) {
  return (x + alignment - 1) / alignment * alignment;
}
} // namespace

weight_arena::weight_arena(buffer memory) : memory_(std::move(memory)) {}

std::byte* weight_arena::at(slot s) const noexcept {
  auto* base = memory_.as<std::byte>();
  if (s == slot::low)
    return base;
  // The high end, aligned down: a model there ends at (or a little before) the region's end.
  const std::size_t bytes = s == active_ ? active_bytes_ : staged_bytes_;
  return base + (capacity() - align_up(bytes)) / alignment * alignment;
}

bool weight_arena::fits_beside_active(std::size_t bytes) const noexcept {
  const std::size_t need = align_up(bytes);
  return need <= capacity() && need <= capacity() - align_up(active_bytes_);
}

result<std::byte*> weight_arena::stage(std::size_t bytes) {
  if (!fits_beside_active(bytes))
    return fail(errc::out_of_memory,
                "a model of " + std::to_string(bytes >> 20) + " MiB does not fit beside the " +
                    std::to_string(active_bytes_ >> 20) + " MiB active one in " +
                    std::to_string(capacity() >> 20) +
                    " MiB of weight memory; scale the active model down first");
  staged_ = active_ == slot::low ? slot::high : slot::low;
  staged_bytes_ = bytes;
  return at(staged_);
}

void weight_arena::activate() {
  AEG_ASSERT(staged_ != slot::none, "weight_arena: nothing staged to activate");
  active_ = staged_;
  active_bytes_ = staged_bytes_;
  staged_ = slot::none;
  staged_bytes_ = 0;
}

void weight_arena::swap() noexcept {
  std::swap(active_, staged_);
  std::swap(active_bytes_, staged_bytes_);
}

void weight_arena::drop_staged() noexcept {
  staged_ = slot::none;
  staged_bytes_ = 0;
}

void weight_arena::drop_active() noexcept {
  active_ = slot::none;
  active_bytes_ = 0;
}

} // namespace aeg::gpu
