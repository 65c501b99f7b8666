#include "models/sizing.hpp"

#include "kernels/kv_geometry.hpp"

#include <algorithm>

namespace aeg::models {

llama_config largest_shape_of(const instance_sizing& s) {
  std::vector<llama_config> configs;
  for (const auto& m : s.models)
    configs.push_back(m.config);
  return largest_shape(configs);
}

std::size_t slab_bytes_for(std::span<const model_footprint> models, std::size_t configured) {
  std::size_t largest = 0;
  for (const auto& m : models)
    largest = std::max(largest, m.kv_block_bytes);
  return std::max(configured, 4 * largest);
}

namespace {

std::size_t largest_kv_block(const instance_sizing& s) {
  std::size_t b = 1;
  for (const auto& m : s.models)
    b = std::max(b, m.kv_block_bytes);
  return b;
}

// The options before the KV pool is resolved: limits, slabs and the weight arena.
engine_options arena_and_slabs(const instance_sizing& s, const llama_config& shape,
                               std::size_t budget) {
  std::size_t largest = 0, second = 0;
  for (const auto& m : s.models) {
    second = std::max(second, std::min(largest, m.image_bytes));
    largest = std::max(largest, m.image_bytes);
  }
  engine_options eo;
  eo.limits = s.limits;
  eo.slab_bytes = slab_bytes_for(s.models, s.slab_bytes);
  eo.kv_bytes = s.kv_bytes;
  eo.weight_bytes = s.weight_bytes;
  if (eo.weight_bytes == 0) {
    // Room to prefetch when the device has it: two models side by side if they take less than
    // half of it and the KV pool still fits beside them (a sized one, or an unsized one's slab).
    const std::size_t both = largest + second + 4096;
    auto with_room = eo;
    with_room.weight_bytes = both;
    const bool room = s.models.size() > 1 && both < budget / 2 &&
                      engine::device_bytes(shape, with_room).total() <= budget;
    eo.weight_bytes = room ? both : largest + 4096;
  }
  return eo;
}

} // namespace

engine_options plan_engine(const instance_sizing& s, std::size_t budget_bytes) {
  const auto shape = largest_shape_of(s);
  auto eo = arena_and_slabs(s, shape, budget_bytes);
  if (eo.kv_bytes == 0) {
    // An unsized KV pool takes what the weights and buffers leave of the budget (less the
    // backend's margin), as `engine::create` takes what a device leaves: nothing more is free.
    const auto taken = engine::device_bytes(shape, eo);
    const std::size_t used = taken.weights + taken.buffers;
    eo.kv_bytes = std::max<std::size_t>(
        budget_bytes > used ? engine::kv_bytes_of_free(budget_bytes - used) : 0, 1);
  }
  return eo;
}

device_plan device_bytes_needed(const instance_sizing& s, std::size_t tokens) {
  const auto shape = largest_shape_of(s);
  const auto eo = arena_and_slabs(s, shape, 0);
  const std::size_t per_slab = std::max<std::size_t>(eo.slab_bytes / largest_kv_block(s), 1);
  const std::size_t blocks = kernels::kv_geometry::blocks_for(tokens);
  const std::size_t slabs = (blocks + per_slab - 1) / per_slab;
  auto plan = engine::device_bytes(shape, eo, slabs);
  // Given that much, the instance may keep room to prefetch a second model: then it needs that
  // room too. The choice only grows with the memory, so it makes it on the larger plan as well.
  if (const auto there = arena_and_slabs(s, shape, plan.total());
      there.weight_bytes != eo.weight_bytes)
    plan = engine::device_bytes(shape, there, slabs);
  return plan;
}

std::size_t mib_ceil(std::size_t bytes) noexcept {
  return (bytes + (std::size_t{1} << 20) - 1) >> 20;
}

error does_not_fit(std::string_view what, std::size_t have_bytes, const device_plan& need,
                   std::string_view fix) {
  return error{errc::out_of_memory, std::string(what) + " has " + std::to_string(have_bytes >> 20) +
                                        " MiB; it needs " + std::to_string(mib_ceil(need.total())) +
                                        " MiB (weights " + std::to_string(mib_ceil(need.weights)) +
                                        ", step buffers " + std::to_string(mib_ceil(need.buffers)) +
                                        ", KV " + std::to_string(mib_ceil(need.kv)) + "); " +
                                        std::string(fix)};
}

} // namespace aeg::models
