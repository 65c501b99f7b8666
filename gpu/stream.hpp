#pragma once

#include "coro/error.hpp"
#include "gpu/event.hpp"

#include <cstddef>
#include <functional>

namespace aeg::gpu {

/// The backends a device can have.
enum class backend_kind { cpu, cuda, sim };

/// Direction of an asynchronous copy.
enum class copy_kind { host_to_device, device_to_host, device_to_device };

/// An in-order queue of device work. Every call enqueues and returns at once; nothing here waits
/// for the work. Calls on one stream must come from one thread at a time (its owner).
class stream {
public:
  virtual ~stream() = default;

  /// Copies `bytes` from `src` to `dst` after the work enqueued before. Host pointers must be
  /// pinned host memory from the same device for the copy to be asynchronous.
  [[nodiscard]] virtual result<void> copy(void* dst, const void* src, std::size_t bytes,
                                          copy_kind kind) = 0;

  /// Captures the work enqueued so far in `ev`.
  [[nodiscard]] virtual result<void> record(event& ev) = 0;

  /// Makes later work on this stream wait until the work `ev` captured (at this call) finished.
  [[nodiscard]] virtual result<void> wait(event& ev) = 0;

  /// Runs `fn` on a driver thread after the work enqueued before; later work waits for it. `fn`
  /// must not call into a device. On the cpu backend this is also how kernels run.
  [[nodiscard]] virtual result<void> host_callback(std::function<void()> fn) = 0;

  /// Which backend runs this stream's work (kernels dispatch on it).
  virtual backend_kind kind() const noexcept = 0;

  /// The backend's handle: a `cudaStream_t` for cuda, null for cpu.
  virtual void* native_handle() const noexcept = 0;

  /// Makes this stream's device the calling thread's current one (CUDA: `cudaSetDevice`), which
  /// kernel launches and cuBLAS calls through `native_handle` need: an actor's coroutine runs on
  /// whichever worker thread its actor is on, and workers serve actors of several devices.
  [[nodiscard]] virtual result<void> make_current() { return {}; }
};

} // namespace aeg::gpu
