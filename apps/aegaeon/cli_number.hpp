#pragma once

#include <CLI/CLI.hpp>

#include <limits>

namespace aeg::apps {

inline constexpr double no_limit = std::numeric_limits<double>::infinity();

/// What a numeric option accepts. CLI11's Range prints DBL_MAX in full, calls a word that is not
/// a number "not in range" and lets NaN through; these say what the option wants instead.
struct bounds {
  double lo = 0;
  double hi = no_limit;
  bool above = false;   // lo itself is not allowed
  bool integer = false; // a whole number (also keeps "-1" from wrapping in an unsigned option)
  const char* why = ""; // appended to the message: the reason for the bound
};

/// "--rate: must be greater than 0, got 0" and the like.
CLI::Validator number(bounds b);

} // namespace aeg::apps
