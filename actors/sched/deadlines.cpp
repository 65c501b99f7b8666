#include "actors/sched/deadlines.hpp"

#include <algorithm>

namespace aeg::sched {

token_deadlines token_deadlines::after(std::size_t tokens, double ttft_seconds,
                                       double tbt_seconds) noexcept {
  token_deadlines d(ttft_seconds, tbt_seconds);
  d.next_ += static_cast<double>(tokens) * tbt_seconds;
  return d;
}

bool token_deadlines::on_token(double at) noexcept {
  const bool on_time = at <= next_;
  next_ = std::max(next_, at) + tbt_;
  return on_time;
}

std::size_t tokens_on_time(const std::vector<double>& times, double ttft, double tbt) {
  token_deadlines d(ttft, tbt);
  return static_cast<std::size_t>(
      std::count_if(times.begin(), times.end(), [&](double t) { return d.on_token(t); }));
}

double seconds_on_schedule(const std::vector<double>& times, double ttft, double tbt) {
  token_deadlines d(ttft, tbt);
  double on = 0, previous = 0;
  for (const double t : times) {
    if (d.on_token(t))
      on += t - previous;
    previous = t;
  }
  return on;
}

} // namespace aeg::sched
