#pragma once

#include <cstddef>
#include <string>

namespace aeg::apps {

/// Settings of `aegaeon demo`.
struct demo_options {
  int num_devices = 2;         ///< CPU devices the actor spreads work over
  int num_coroutines = 256;    ///< coroutines the one actor interleaves
  int steps = 8;               ///< device round trips per coroutine
  std::size_t elements = 4096; ///< floats each coroutine moves per step
  std::string backend = "cpu"; ///< device backend
};

/// Runs the demo: one actor interleaves many coroutines that each enqueue copies and a kernel on
/// a device stream and await its event. Prints what happened; returns the process exit code.
int run_demo(const demo_options& options);

} // namespace aeg::apps
