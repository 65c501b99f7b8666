#pragma once

#include "gpu/device.hpp"
#include "gpu/sim/sim_clock.hpp"
#include "gpu/sim/sim_cores.hpp"
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
  /// `cores`, when given, is the compute this device shares with others (the profile's
  /// `shared_compute`: one for all the simulation's devices); null: its own engines.
  sim_device(std::shared_ptr<sim_clock> clock, std::shared_ptr<const sim_profile> profile,
             int ordinal, std::size_t capacity_bytes = 0,
             std::shared_ptr<sim_cores> cores = nullptr);

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
  /// The compute shared with other devices; null where this device computes on its own.
  sim_cores* cores() const noexcept { return cores_.get(); }

  /// The end of a copy of `bytes` that may start at `earliest`, on the link of `kind`, which it
  /// holds until then; where the cores are shared, it weighs among their steps meanwhile.
  sim_clock::time_point take_link(copy_kind kind, sim_clock::time_point earliest,
                                  std::size_t bytes);

protected:
  void release(void* ptr, std::size_t bytes, buffer::space where) noexcept override;

private:
  std::shared_ptr<sim_clock> clock_;
  std::shared_ptr<const sim_profile> profile_;
  int ordinal_;
  std::size_t capacity_;
  std::size_t used_ = 0;
  sim_clock::time_point h2d_free_{}, d2h_free_{}, d2d_free_{};
  std::shared_ptr<sim_cores> cores_;
};

struct sim_lane;

/// A simulated device's stream. Each call queues after what was queued before; `record`
/// completes the event when the clock reaches the end of the work before it. On a device's own
/// engines that end is known as the work is queued: the stream is a timeline. On shared cores
/// it is known only as the other devices' work comes and goes: the stream is a queue that the
/// clock works through, each call starting when the one before has ended.
class sim_stream final : public stream {
public:
  explicit sim_stream(std::shared_ptr<sim_device> dev);
  /// Work still queued is dropped; its records complete, so that nothing waits for them forever.
  ~sim_stream() override;

  result<void> copy(void* dst, const void* src, std::size_t bytes, copy_kind kind) override;
  result<void> record(event& ev) override;
  result<void> wait(event& ev) override;
  result<void> host_callback(std::function<void()> fn) override;
  backend_kind kind() const noexcept override { return backend_kind::sim; }
  void* native_handle() const noexcept override { return nullptr; }

  /// Keeps the stream busy for `d` after the work queued before: a kernel's cost, as long as it
  /// takes with the compute to itself. Where compute is shared, it shares it with the other
  /// devices' work in progress, and both take longer.
  void busy(sim_clock::duration d);
  /// Holds the stream's later work back by `d` without working: time it waits, on the cores or
  /// on the host, that no other device's work waits for.
  void delay(sim_clock::duration d);
  /// Calls `fn` with the point where the work queued so far ends: at once where that is known
  /// (a device's own engines), else once the clock gets there (before the work after starts).
  void when_reached(std::function<void(sim_clock::time_point)> fn);

private:
  sim_clock::time_point tail() const noexcept;

  std::shared_ptr<sim_device> dev_;
  sim_clock::time_point tail_{};   // on the device's own engines: where the work queued ends
  std::shared_ptr<sim_lane> lane_; // on shared cores: the work not yet reached
};

/// `seconds` as the clocks' duration.
inline sim_clock::duration sim_seconds(double seconds) {
  return std::chrono::duration_cast<sim_clock::duration>(std::chrono::duration<double>(seconds));
}

/// Memory that takes address space and nothing else: `bytes` reserved without access. What a
/// simulation's devices and model images hold instead of data. Unmapped with the last handle.
std::shared_ptr<std::byte> hollow_memory(std::size_t bytes);

} // namespace aeg::gpu
