#pragma once

#include "gpu/device.hpp"

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

namespace aeg::gpu {

/// A CPU standing in for an accelerator: device memory is host memory under a capacity budget,
/// and each stream is a worker thread draining a lock-free queue in order. What CI tests.
class cpu_device final : public device {
public:
  /// A device named "cpu:<ordinal>" that hands out at most `capacity_bytes` of memory.
  cpu_device(int ordinal, std::size_t capacity_bytes);
  ~cpu_device() override;

  std::string name() const override;
  backend_kind kind() const noexcept override { return backend_kind::cpu; }
  std::size_t capacity_bytes() const noexcept override { return capacity_; }
  std::size_t used_bytes() const noexcept override { return used_.load(); }

  result<buffer> allocate(std::size_t bytes) override;
  result<buffer> allocate_pinned(std::size_t bytes) override;
  result<std::shared_ptr<void>> pin(void* ptr, std::size_t bytes) override;
  result<std::unique_ptr<stream>> create_stream() override;
  result<std::unique_ptr<event>> create_event() override;

protected:
  void release(void* ptr, std::size_t bytes, buffer::space where) noexcept override;

private:
  int ordinal_;
  std::size_t capacity_;
  std::atomic<std::size_t> used_{0};
};

} // namespace aeg::gpu
