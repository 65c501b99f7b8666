#pragma once

#include <cstddef>
#include <vector>

namespace aeg::sched {

/// When each token of a request is due: the one deadline rule of the pool (instances steer by
/// it, request actors and load generators measure by it). Times are seconds from the request's
/// arrival. The first token is due at TTFT; each later one TBT after the previous deadline, or
/// after the previous token when that one was late: a late token re-anchors the schedule instead
/// of condemning every later one.
class token_deadlines {
public:
  token_deadlines(double ttft_seconds, double tbt_seconds) noexcept
      : tbt_(tbt_seconds), next_(ttft_seconds) {}

  /// The schedule of a request whose first `tokens` tokens came before it was counted (a request
  /// placed again after its instance died): as if each had been on time.
  static token_deadlines after(std::size_t tokens, double ttft_seconds,
                               double tbt_seconds) noexcept;

  /// When the next token is due.
  double next() const noexcept { return next_; }
  /// A token came at `at`; returns whether it was on time. The schedule moves on.
  bool on_token(double at) noexcept;

private:
  double tbt_;
  double next_;
};

/// How many of `times` (each token's time) met their deadlines.
std::size_t tokens_on_time(const std::vector<double>& times, double ttft, double tbt);

/// Seconds of [0, last token] during which the output was on schedule: each gap before a token
/// that met its deadline counts, each gap before a late one does not. Tokens at 3, 6, 7 and 8 s
/// with TTFT 3 s and TBT 2 s give 5 (of 8).
double seconds_on_schedule(const std::vector<double>& times, double ttft, double tbt);

} // namespace aeg::sched
