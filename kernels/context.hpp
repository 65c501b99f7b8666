#pragma once

#include "coro/error.hpp"
#include "gpu/stream.hpp"
#include "kernels/device_scratch.hpp"

#include <memory>

namespace aeg::kernels {

/// What the kernels of one stream need besides the stream: on CUDA a cuBLAS handle bound to it.
/// Created once per stream and kept across every model the stream runs (component reuse).
/// Used by the stream's owner only.
class context {
public:
  /// A context for `s`, which must outlive it. `errc::device_error` when the backend cannot
  /// create its resources.
  static result<std::unique_ptr<context>> create(gpu::stream& s);
  ~context();
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  gpu::stream& stream() const noexcept { return stream_; }
  gpu::backend_kind kind() const noexcept { return stream_.kind(); }
  /// The cuBLAS handle (a cublasHandle_t) on CUDA; null on the CPU.
  void* blas() const noexcept { return blas_; }
  /// Attention's split states on CUDA (unused on the CPU).
  device_scratch& attention_scratch() noexcept { return attention_scratch_; }

private:
  explicit context(gpu::stream& s) : stream_(s) {}
  gpu::stream& stream_;
  void* blas_ = nullptr;
  device_scratch attention_scratch_;
};

} // namespace aeg::kernels
