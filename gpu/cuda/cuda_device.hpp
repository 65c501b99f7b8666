#pragma once

#include "gpu/device.hpp"

#include <cstddef>
#include <memory>

namespace aeg::gpu::cuda {

/// Number of CUDA devices visible, or `errc::unavailable` with CUDA's reason when none can be
/// used (no driver, an insufficient driver, no device).
result<int> device_count();

/// The CUDA device `ordinal` with real streams and events. Completion reaches callbacks through
/// `cudaLaunchHostFunc`; nothing on the serving path synchronizes. `capacity_bytes` 0 means the
/// device's free memory at creation.
result<std::shared_ptr<device>> make_device(int ordinal, std::size_t capacity_bytes);

} // namespace aeg::gpu::cuda
