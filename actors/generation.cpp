#include "actors/generation.hpp"

#include "gpu/kv_pool.hpp"

namespace aeg::actors {

std::string_view to_string(finish_reason r) noexcept {
  switch (r) {
  case finish_reason::stop:
    return "stop";
  case finish_reason::length:
    return "length";
  case finish_reason::cancelled:
    return "cancelled";
  case finish_reason::error:
    return "error";
  case finish_reason::unavailable:
    return "unavailable";
  }
  return "error";
}

kv_in_flight::kv_in_flight(std::shared_ptr<gpu::kv_pool> host_pool, models::kv_handle kv)
    : pool_(std::move(host_pool)), kv_(std::move(kv)) {}

kv_in_flight::~kv_in_flight() {
  // Unclaimed: the job was dropped on its way. The swap-out may still be writing the blocks.
  if (pool_ && kv_.where == models::kv_handle::place::host && !kv_.blocks.empty())
    pool_->free_after(kv_.block_bytes(), std::move(kv_.blocks), {kv_.ready});
}

models::kv_handle kv_in_flight::claim() noexcept {
  models::kv_handle out = std::move(kv_);
  kv_ = {};
  return out;
}

} // namespace aeg::actors
