#pragma once

#include "coro/error.hpp"
#include "gpu/event.hpp"
#include "gpu/stream.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

namespace aeg::gpu {

class device;

/// Owning handle to a block of device memory (or pinned host memory); frees it when destroyed.
/// Keeps its device alive.
class buffer {
public:
  enum class space { device, pinned_host };

  buffer() noexcept = default;
  buffer(std::shared_ptr<device> dev, void* ptr, std::size_t bytes, space where) noexcept
      : dev_(std::move(dev)), ptr_(ptr), bytes_(bytes), space_(where) {}
  buffer(buffer&& o) noexcept { swap(o); }
  buffer& operator=(buffer&& o) noexcept {
    buffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer();

  void* data() const noexcept { return ptr_; }
  template <class T>
  T* as() const noexcept {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const noexcept { return bytes_; }
  space where() const noexcept { return space_; }
  explicit operator bool() const noexcept { return ptr_ != nullptr; }

private:
  void swap(buffer& o) noexcept {
    std::swap(dev_, o.dev_);
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    std::swap(space_, o.space_);
  }
  std::shared_ptr<device> dev_;
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
  space space_ = space::device;
};

/// The capacity an allocation of `bytes` takes: allocations are 256-byte aligned, and a backend
/// counts at most the rounded size against its capacity. What sizing plans add up.
constexpr std::size_t allocation_bytes(std::size_t bytes) noexcept {
  return (bytes + 255) / 256 * 256;
}

/// One accelerator (or a CPU standing in for one): memory under a capacity budget, streams,
/// events, pinned host memory. Create through `gpu::make_device` (registry.hpp). Thread-safe.
class device : public std::enable_shared_from_this<device> {
public:
  virtual ~device() = default;

  /// "cpu:0", "cuda:0 (NVIDIA H200)".
  virtual std::string name() const = 0;
  virtual backend_kind kind() const noexcept = 0;

  /// Device memory this device may hand out, in bytes.
  virtual std::size_t capacity_bytes() const noexcept = 0;
  /// Device memory handed out and not yet freed, in bytes.
  virtual std::size_t used_bytes() const noexcept = 0;
  std::size_t free_bytes() const noexcept { return capacity_bytes() - used_bytes(); }

  /// Device memory, 256-byte aligned. `errc::out_of_memory` when it would exceed the capacity.
  [[nodiscard]] virtual result<buffer> allocate(std::size_t bytes) = 0;
  /// Page-locked host memory that the device copies to and from asynchronously.
  [[nodiscard]] virtual result<buffer> allocate_pinned(std::size_t bytes) = 0;

  /// Makes host memory this device did not allocate (a shared-memory file) copyable without
  /// staging, like `allocate_pinned`'s; the handle undoes it when the last copy goes. The memory
  /// must outlive the handle. Nothing to do on the CPU.
  [[nodiscard]] virtual result<std::shared_ptr<void>> pin(void* ptr, std::size_t bytes) = 0;

  [[nodiscard]] virtual result<std::unique_ptr<stream>> create_stream() = 0;
  [[nodiscard]] virtual result<std::unique_ptr<event>> create_event() = 0;

protected:
  friend class buffer;
  /// Returns memory from `allocate` (space::device) or `allocate_pinned` (space::pinned_host).
  virtual void release(void* ptr, std::size_t bytes, buffer::space where) noexcept = 0;
};

inline buffer::~buffer() {
  if (ptr_)
    dev_->release(ptr_, bytes_, space_);
}

} // namespace aeg::gpu
