#pragma once

#include "coro/error.hpp"

#include <cuda_runtime_api.h>

#include <string>

namespace aeg::kernels::cuda {

/// Turns the state after a launch (or any CUDA call's error) into a result naming the op.
inline result<void> check(const char* what, cudaError_t err = cudaGetLastError()) noexcept {
  if (err == cudaSuccess)
    return {};
  // The error is returned here: clear it from the thread's last error, where the check after
  // some later launch on this thread would report it again as that launch's failure.
  cudaGetLastError();
  try {
    return fail(errc::device_error, std::string(what) + ": " + cudaGetErrorName(err) + " (" +
                                        cudaGetErrorString(err) + ")");
  } catch (...) {
    return fail(errc::device_error, {});
  }
}

/// Blocks of `threads` covering `n` items.
inline unsigned blocks_for(std::size_t n, unsigned threads) noexcept {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

} // namespace aeg::kernels::cuda
