#include "actors/instance_support.hpp"

#include "models/sizing.hpp"

namespace aeg::actors {

std::unique_ptr<models::engine> make_instance_engine(const std::shared_ptr<gpu::device>& dev,
                                                     std::shared_ptr<gpu::kv_pool>& host_kv,
                                                     const std::vector<served_model>& models,
                                                     const instance_options& options) {
  if (models.empty())
    throw error_exception(error{errc::invalid_argument, "an instance needs a model"});
  std::vector<models::model_footprint> footprints;
  for (const auto& m : models)
    footprints.push_back(models::footprint_of(*m.image));
  const auto sizing = sizing_of(std::move(footprints), options);
  const auto eo = options.engine ? *options.engine : models::plan_engine(sizing, dev->free_bytes());
  if (!host_kv) {
    std::size_t host_bytes = options.host_kv_bytes;
    if (host_bytes == 0)
      host_bytes = options.kv_bytes != 0 ? options.kv_bytes : std::size_t{256} << 20;
    host_kv = std::make_shared<gpu::kv_pool>(value_or_throw(dev->allocate_pinned(host_bytes)),
                                             eo.slab_bytes);
  }
  return value_or_throw(models::engine::create(dev, host_kv, models::largest_shape_of(sizing), eo));
}

void add_engine_stats(instance_stats& s, models::engine& engine) {
  engine.reclaim(); // blocks whose last transfer has finished are free
  s.kv_bytes_used = engine.device_kv().allocated_bytes();
  s.host_kv_bytes_used = engine.host_kv().allocated_bytes();
  s.kv_fragmentation = engine.device_kv().fragmentation();
  s.swaps_out = engine.stats().swaps_out;
  s.swaps_in = engine.stats().swaps_in;
  s.weight_bytes_copied = engine.stats().weight_bytes_copied;
  s.kv_bytes_swapped = engine.stats().kv_bytes_out + engine.stats().kv_bytes_in;
}

std::size_t switch_log::began(time_point at, std::string from, std::string to, bool prefetched) {
  if (entries_.size() == capacity) {
    entries_.pop_front();
    ++first_;
  }
  entries_.push_back({at, {0, std::move(from), std::move(to), -1, prefetched}});
  return first_ + entries_.size() - 1;
}

void switch_log::scaled_up(std::size_t n, double seconds) {
  if (n >= first_ && n - first_ < entries_.size())
    entries_[n - first_].record.scale_up_seconds = seconds;
}

std::vector<switch_record> switch_log::report(time_point now) const {
  std::vector<switch_record> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) {
    out.push_back(e.record);
    out.back().seconds_ago = std::chrono::duration<double>(now - e.at).count();
  }
  return out;
}

} // namespace aeg::actors
