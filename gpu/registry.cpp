#include "gpu/registry.hpp"

#include "gpu/cpu/cpu_device.hpp"
#include "gpu/sim/sim_device.hpp"

#if AEG_HAS_CUDA
#include "gpu/cuda/cuda_device.hpp"
#endif

namespace aeg::gpu {

// The one place that knows whether CUDA was built in.

result<std::shared_ptr<device>> make_device(const device_options& options) {
  if (options.backend == "cpu") {
    if (options.ordinal < 0)
      return fail(errc::invalid_argument, "cpu device ordinal must be >= 0");
    auto capacity =
        options.capacity_bytes == 0 ? default_cpu_capacity_bytes : options.capacity_bytes;
    return std::shared_ptr<device>(std::make_shared<cpu_device>(options.ordinal, capacity));
  }
  if (options.backend == "cuda") {
#if AEG_HAS_CUDA
    return cuda::make_device(options.ordinal, options.capacity_bytes);
#else
    return fail(errc::unavailable, "this binary was built without CUDA; rebuild with the CUDA "
                                   "toolkit installed (AEG_CUDA=AUTO or ON) or use backend 'cpu'");
#endif
  }
  if (options.backend == "sim") {
    if (!options.clock || !options.profile)
      return fail(errc::invalid_argument,
                  "a sim device runs on a simulation's virtual clock: use `aegaeon simulate`, not "
                  "a served topology");
    return std::shared_ptr<device>(std::make_shared<sim_device>(
        options.clock, options.profile, options.ordinal, options.capacity_bytes, options.cores));
  }
  return fail(errc::not_found, "unknown device backend '" + options.backend +
                                   "'; choose 'cpu' or 'cuda' ('sim' in a simulation)");
}

std::vector<std::string> built_backends() {
#if AEG_HAS_CUDA
  return {"cpu", "cuda"};
#else
  return {"cpu"};
#endif
}

bool gpu_available() {
#if AEG_HAS_CUDA
  return cuda::device_count().has_value();
#else
  return false;
#endif
}

} // namespace aeg::gpu
