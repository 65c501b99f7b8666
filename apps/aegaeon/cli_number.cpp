#include "apps/aegaeon/cli_number.hpp"

#include <fmt/core.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

namespace aeg::apps {

CLI::Validator number(bounds b) {
  std::string desc = b.above ? fmt::format("> {}", b.lo) : fmt::format(">= {}", b.lo);
  if (b.hi != no_limit)
    desc += fmt::format(", <= {}", b.hi);
  return CLI::Validator(
      [b](std::string& in) -> std::string {
        double v = 0;
        if (b.integer) {
          const char* first = in.data();
          const char* last = in.data() + in.size();
          std::from_chars_result r{};
          if (!in.empty() && in.front() == '-') {
            long long x = 0;
            r = std::from_chars(first, last, x);
            v = static_cast<double>(x);
          } else {
            unsigned long long x = 0;
            r = std::from_chars(first, last, x);
            v = static_cast<double>(x);
          }
          if (r.ec == std::errc::result_out_of_range)
            return fmt::format("'{}' is too large", in);
          if (r.ec != std::errc{} || r.ptr != last)
            return fmt::format("expects a whole number, got '{}'", in);
        } else {
          char* end = nullptr;
          v = std::strtod(in.c_str(), &end);
          if (in.empty() || end != in.c_str() + in.size())
            return fmt::format("expects a number, got '{}'", in);
          if (!std::isfinite(v))
            return fmt::format("expects a finite number, got '{}'", in);
        }
        const bool low = b.above ? v <= b.lo : v < b.lo;
        if (!low && v <= b.hi)
          return {};
        const bool capped = b.hi != no_limit;
        const std::string want = b.above && capped
                                     ? fmt::format("greater than {} and at most {}", b.lo, b.hi)
                                 : b.above ? fmt::format("greater than {}", b.lo)
                                 : capped  ? fmt::format("between {} and {}", b.lo, b.hi)
                                           : fmt::format("at least {}", b.lo);
        return fmt::format("must be {}, got {}{}", want, in, b.why);
      },
      desc);
}

} // namespace aeg::apps
