#include "apps/server/token_rates.hpp"

namespace aeg::server {

token_rates::rates token_rates::sample(clock::time_point now, const counts& current) {
  using seconds = std::chrono::duration<double>;
  // Drop what a newer sample, itself old enough, makes useless as the window's start.
  while (samples_.size() > 1 && seconds(now - samples_[1].at).count() >= window_seconds_)
    samples_.pop_front();
  rates out;
  if (!samples_.empty()) {
    const auto& base = samples_.front();
    out.window_seconds = seconds(now - base.at).count();
    for (const auto& [model, n] : current) {
      const auto it = base.tokens.find(model);
      const std::size_t before = it == base.tokens.end() ? 0 : it->second;
      out.per_second[model] = out.window_seconds > 1e-3 && n >= before
                                  ? static_cast<double>(n - before) / out.window_seconds
                                  : 0.0;
    }
    if (out.window_seconds <= 1e-3)
      out.window_seconds = 0;
  } else {
    for (const auto& [model, n] : current)
      out.per_second[model] = 0.0;
  }
  if (samples_.empty() || seconds(now - samples_.back().at).count() >= 0.2)
    samples_.push_back({now, current});
  return out;
}

} // namespace aeg::server
