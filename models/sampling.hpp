#pragma once

#include "kernels/sampling_row.hpp"

#include <cstddef>
#include <cstdint>

namespace aeg::models {

/// How a request wants its tokens picked. temperature 0 is greedy.
struct sampling_params {
  float temperature = 0;
  std::int32_t top_k = 0; ///< 0: no limit
  float top_p = 1;
  std::uint64_t seed = 0;
};

/// Serialisation (CAF's inspectors): sampling parameters travel inside requests between nodes.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sampling_params& x) {
  return f(x.temperature, x.top_k, x.top_p, x.seed);
}

/// The sampling rule for the token at index `step` of a request's output: the request's
/// parameters with a uniform number drawn from (seed, step) alone, so that a request picks the
/// same tokens however it is batched, preempted or moved.
kernels::sampling_row sampling_row_for(const sampling_params& p, std::size_t step) noexcept;

} // namespace aeg::models
