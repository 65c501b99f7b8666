#pragma once

#include <cstddef>

namespace aeg::kernels {

/// Device memory an op borrows between launches (attention's per-split softmax states on CUDA),
/// grown on demand, owned by the stream's context and freed with it.
struct device_scratch {
  void* data = nullptr;
  std::size_t bytes = 0;
};

} // namespace aeg::kernels
