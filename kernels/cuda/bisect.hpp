#pragma once

// Searches over all 32-bit unsigned values, usable from CUDA kernels (the sampling cut) and from
// host tests. No CUDA headers.

#include "kernels/host_device.hpp"

namespace aeg::kernels::cuda {

/// The largest x in [0, 2^32 - 1] with `reaches(x)`, for a `reaches` that holds at 0 and, once
/// false, stays false. At most 32 probes.
template <class Reaches>
AEG_HOST_DEVICE unsigned highest_reaching(Reaches&& reaches) {
  unsigned lo = 0, hi = 0xffffffffu; // the answer lies in [lo, hi]
  while (lo < hi) {
    // The upper middle, so that `lo = mid` always moves. Written as hi minus half the gap: the
    // gap plus one wraps to 0 when it spans the whole range.
    const unsigned mid = hi - (hi - lo) / 2;
    if (reaches(mid))
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/// The smallest x in [0, 2^32 - 1] with `reaches(x)`, for a `reaches` that holds at 2^32 - 1 and,
/// once true, stays true. At most 32 probes.
template <class Reaches>
AEG_HOST_DEVICE unsigned lowest_reaching(Reaches&& reaches) {
  unsigned lo = 0, hi = 0xffffffffu; // the answer lies in [lo, hi]
  while (lo < hi) {
    const unsigned mid = lo + (hi - lo) / 2;
    if (reaches(mid))
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

} // namespace aeg::kernels::cuda
