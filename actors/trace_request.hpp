#pragma once

#include <cstddef>
#include <string>

namespace aeg::actors {

/// One request of a workload: when it arrives (seconds from the start), for which model, how
/// long its prompt is and how many tokens it generates. What traces hold and what benchmarks
/// and simulations replay. Plain data, no CAF.
struct trace_request {
  double arrival = 0;
  std::string model;
  std::size_t prompt_tokens = 0;
  std::size_t output_tokens = 0;
};

} // namespace aeg::actors
