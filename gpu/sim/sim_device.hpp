#pragma once

#include "gpu/device.hpp"
#include "gpu/sim/sim_clock.hpp"
#include "gpu/sim/sim_profile.hpp"

#include <memory>
#include <string>
#include <utility>

namespace aeg::gpu {

/// A simulated accelerator: no data moves and no kernel computes; each operation completes
/// after its cost on a virtual clock. Memory is address space reserved without access (a stray
/// read or write faults at once), counted against the profile's capacity. Copies share one link
/// per direction, so weights and KV going the same way queue behind each other. For the
/// simulation's single thread only (see sim_clock).
class sim_device final : public device {
public:
  /// `shared_compute`, when given, is where the compute of every device sharing it is free next
  /// (the profile's `shared_compute`: one for all the simulation's devices).
  sim_device(std::shared_ptr<sim_clock> clock, std::shared_ptr<const sim_profile> profile,
             int ordinal, std::size_t capacity_bytes = 0,
             std::shared_ptr<sim_clock::time_point> shared_compute = nullptr);

  /// "sim:3 (H800)".
  std::string name() const override;
  backend_kind kind() const noexcept override { return backend_kind::sim; }
  std::size_t capacity_bytes() const noexcept override { return capacity_; }
  std::size_t used_bytes() const noexcept override { return used_; }

  result<buffer> allocate(std::size_t bytes) override;
  result<buffer> allocate_pinned(std::size_t bytes) override;
  result<std::shared_ptr<void>> pin(void* ptr, std::size_t bytes) override;
  result<std::unique_ptr<stream>> create_stream() override;
  result<std::unique_ptr<event>> create_event() override;

  const sim_profile& profile() const noexcept { return *profile_; }
  sim_clock& clock() const noexcept { return *clock_; }

  /// Where the link of `kind` is free next (the end of the last copy queued on it), and the
  /// end of a copy of `bytes` that may start at `earliest`, which it then holds.
  sim_clock::time_point take_link(copy_kind kind, sim_clock::time_point earliest,
                                  std::size_t bytes);
  /// The end of `d` of compute that may start at `earliest`: then, or after the other devices'
  /// steps when they share the compute.
  sim_clock::time_point take_compute(sim_clock::time_point earliest, sim_clock::duration d);

protected:
  void release(void* ptr, std::size_t bytes, buffer::space where) noexcept override;

private:
  std::shared_ptr<sim_clock> clock_;
  std::shared_ptr<const sim_profile> profile_;
  int ordinal_;
  std::size_t capacity_;
  std::size_t used_ = 0;
  sim_clock::time_point h2d_free_{}, d2h_free_{}, d2d_free_{};
  std::shared_ptr<sim_clock::time_point> shared_compute_;
};

/// A simulated device's stream: its work is a timeline. Each call queues after what was queued
/// before and records when it ends; `record` completes the event at that point of the clock.
class sim_stream final : public stream {
public:
  explicit sim_stream(std::shared_ptr<sim_device> dev) : dev_(std::move(dev)) {}

  result<void> copy(void* dst, const void* src, std::size_t bytes, copy_kind kind) override;
  result<void> record(event& ev) override;
  result<void> wait(event& ev) override;
  result<void> host_callback(std::function<void()> fn) override;
  backend_kind kind() const noexcept override { return backend_kind::sim; }
  void* native_handle() const noexcept override { return nullptr; }

  /// Keeps the stream busy for `d` after the work queued before: a kernel's cost. Where compute
  /// is shared, the other devices' work waits for it too.
  void busy(sim_clock::duration d);
  /// Holds the stream's later work back by `d` without working: time it waits, on the cores or
  /// on the host, that no other device's work waits for.
  void delay(sim_clock::duration d);
  /// When the work queued so far ends.
  sim_clock::time_point tail() const noexcept;

private:
  std::shared_ptr<sim_device> dev_;
  sim_clock::time_point tail_{};
};

/// `seconds` as the clocks' duration.
inline sim_clock::duration sim_seconds(double seconds) {
  return std::chrono::duration_cast<sim_clock::duration>(std::chrono::duration<double>(seconds));
}

/// Memory that takes address space and nothing else: `bytes` reserved without access. What a
/// simulation's devices and model images hold instead of data. Unmapped with the last handle.
std::shared_ptr<std::byte> hollow_memory(std::size_t bytes);

} // namespace aeg::gpu
