#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <string>

namespace aeg::server {

/// Tokens per second per model over a sliding window, from cumulative token counts sampled
/// whenever someone asks (each `GET /status`). Plain code: the caller passes the time. io thread
/// only.
class token_rates {
public:
  using clock = std::chrono::steady_clock;
  using counts = std::map<std::string, std::size_t>; ///< cumulative tokens by model

  /// Rates over about `window_seconds`: the oldest sample kept is the newest one at least that
  /// old, so a window is never shorter than the polling allows.
  explicit token_rates(double window_seconds = 5) : window_seconds_(window_seconds) {}

  /// Each model's rate and the seconds it was measured over (0 on the first sample: no rate yet).
  struct rates {
    std::map<std::string, double> per_second;
    double window_seconds = 0;
  };

  /// Records `now`'s counts and answers the rates from the window's first sample to them. A
  /// model absent from that sample counts from 0. Samples closer than 0.2 s to the last one kept
  /// are measured against but not kept, so that many pollers hold no more than a few dozen.
  rates sample(clock::time_point now, const counts& current);

private:
  struct point {
    clock::time_point at;
    counts tokens;
  };
  double window_seconds_;
  std::deque<point> samples_; ///< oldest first
};

} // namespace aeg::server
