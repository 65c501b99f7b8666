#pragma once

#include "coro/error.hpp"
#include "gpu/device.hpp"
#include "gpu/sim/sim_clock.hpp"
#include "gpu/sim/sim_cores.hpp"
#include "gpu/sim/sim_profile.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace aeg::gpu {

/// What `make_device` builds.
struct device_options {
  std::string backend = "cpu";    ///< "cpu", "cuda" or "sim"
  int ordinal = 0;                ///< which device of that backend
  std::size_t capacity_bytes = 0; ///< memory budget; 0: cpu 1 GiB, cuda the free memory, sim
                                  ///< the profile's
  /// sim: the virtual clock its work completes on, and what it costs (both required).
  std::shared_ptr<sim_clock> clock;
  std::shared_ptr<const sim_profile> profile;
  /// sim: the compute this device shares with others (see sim_cores); null: its own engines.
  std::shared_ptr<sim_cores> cores;
};

/// Creates a device. Errors say what to do: `errc::not_found` for an unknown backend name,
/// `errc::unavailable` when CUDA was not built into this binary or no GPU is visible,
/// `errc::invalid_argument` for a sim device without a clock or a profile (only a simulation
/// makes those).
result<std::shared_ptr<device>> make_device(const device_options& options);

/// The backends built into this binary ("cpu", and "cuda" when built with CUDA).
std::vector<std::string> built_backends();

/// Whether a usable GPU is visible (false without CUDA support or without a device).
bool gpu_available();

/// Default memory budget of a cpu device when none is given.
inline constexpr std::size_t default_cpu_capacity_bytes = std::size_t{1} << 30;

} // namespace aeg::gpu
