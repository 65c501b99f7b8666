#include "gpu/sim/sim_device.hpp"

#include <algorithm>
#include <sys/mman.h>

namespace aeg::gpu {

namespace {

// What a simulated event carries: when the work of its latest record ends, which a stream that
// waits for it must not start before.
struct sim_mark {
  sim_clock::time_point done{};
};

sim_mark& mark_of(event& ev) {
  return *static_cast<sim_mark*>(ev.native());
}

// Address space without access: touching it faults, which is what a simulation wants from a
// pointer that stands for device memory.
void* reserve(std::size_t bytes) {
  void* p = ::mmap(nullptr, std::max<std::size_t>(bytes, 1), PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void unreserve(void* p, std::size_t bytes) noexcept {
  ::munmap(p, std::max<std::size_t>(bytes, 1));
}

} // namespace

std::shared_ptr<std::byte> hollow_memory(std::size_t bytes) {
  void* p = reserve(bytes);
  if (p == nullptr)
    return nullptr;
  return {static_cast<std::byte*>(p), [bytes](std::byte* q) { unreserve(q, bytes); }};
}

sim_device::sim_device(std::shared_ptr<sim_clock> clock, std::shared_ptr<const sim_profile> profile,
                       int ordinal, std::size_t capacity_bytes,
                       std::shared_ptr<sim_clock::time_point> shared_compute)
    : clock_(std::move(clock)), profile_(std::move(profile)), ordinal_(ordinal),
      capacity_(capacity_bytes != 0 ? capacity_bytes : profile_->memory_bytes),
      shared_compute_(std::move(shared_compute)) {}

std::string sim_device::name() const {
  return "sim:" + std::to_string(ordinal_) + " (" + profile_->name + ")";
}

result<buffer> sim_device::allocate(std::size_t bytes) {
  const std::size_t rounded = allocation_bytes(bytes);
  if (rounded > capacity_ - used_)
    return fail(errc::out_of_memory, name() + ": " + std::to_string(bytes >> 20) +
                                         " MiB requested, " + std::to_string(free_bytes() >> 20) +
                                         " MiB free");
  void* p = reserve(rounded);
  if (p == nullptr)
    return fail(errc::out_of_memory, name() + ": no address space left to reserve " +
                                         std::to_string(rounded >> 20) + " MiB");
  used_ += rounded;
  return buffer(shared_from_this(), p, rounded, buffer::space::device);
}

result<buffer> sim_device::allocate_pinned(std::size_t bytes) {
  const std::size_t rounded = allocation_bytes(bytes);
  void* p = reserve(rounded);
  if (p == nullptr)
    return fail(errc::out_of_memory, name() + ": no address space left to reserve " +
                                         std::to_string(rounded >> 20) + " MiB of host memory");
  return buffer(shared_from_this(), p, rounded, buffer::space::pinned_host);
}

result<std::shared_ptr<void>> sim_device::pin(void* ptr, std::size_t) {
  return std::shared_ptr<void>(ptr, [](void*) {});
}

void sim_device::release(void* ptr, std::size_t bytes, buffer::space where) noexcept {
  unreserve(ptr, bytes);
  if (where == buffer::space::device)
    used_ -= bytes;
}

result<std::unique_ptr<stream>> sim_device::create_stream() {
  return std::unique_ptr<stream>(
      std::make_unique<sim_stream>(std::static_pointer_cast<sim_device>(shared_from_this())));
}

result<std::unique_ptr<event>> sim_device::create_event() {
  return std::make_unique<event>(new sim_mark, [](void* m) { delete static_cast<sim_mark*>(m); });
}

sim_clock::time_point sim_device::take_link(copy_kind kind, sim_clock::time_point earliest,
                                            std::size_t bytes) {
  auto& link = kind == copy_kind::host_to_device   ? h2d_free_
               : kind == copy_kind::device_to_host ? d2h_free_
                                                   : d2d_free_;
  const double bw = kind == copy_kind::host_to_device   ? profile_->h2d_bytes_per_second
                    : kind == copy_kind::device_to_host ? profile_->d2h_bytes_per_second
                                                        : profile_->d2d_bytes_per_second;
  const double seconds = profile_->copy_seconds + static_cast<double>(bytes) / bw;
  const auto start = std::max(link, earliest);
  // Where compute is shared (a CPU's cores), a copy is the cores' work too: one that takes all
  // of them queues with the steps of every device; one that takes a share runs beside them and
  // holds their work up for that share of its time, owed from now: charged from its own start,
  // a copy in pieces would leave the cores idle between one piece's share and the next.
  const double share = profile_->copy_compute_share;
  if (!shared_compute_)
    link = start + sim_seconds(seconds);
  else if (share >= 1)
    link = take_compute(start, sim_seconds(seconds));
  else {
    link = start + sim_seconds(seconds);
    (void)take_compute(clock_->now(), sim_seconds(seconds * share));
  }
  return link;
}

sim_clock::time_point sim_device::take_compute(sim_clock::time_point earliest,
                                               sim_clock::duration d) {
  if (!shared_compute_)
    return earliest + d;
  const auto start = std::max(*shared_compute_, earliest);
  *shared_compute_ = start + d;
  return *shared_compute_;
}

// --- sim_stream --------------------------------------------------------------------------------

sim_clock::time_point sim_stream::tail() const noexcept {
  return std::max(tail_, dev_->clock().now());
}

result<void> sim_stream::copy(void*, const void*, std::size_t bytes, copy_kind kind) {
  tail_ = dev_->take_link(kind, tail(), bytes);
  return {};
}

result<void> sim_stream::record(event& ev) {
  auto* mark = static_cast<sim_mark*>(ev.native());
  if (mark == nullptr)
    return fail(errc::invalid_argument, "a simulated stream can only record a simulated event");
  const auto gen = ev.begin_record();
  mark->done = tail();
  dev_->clock().at(mark->done, ev.completer(gen));
  return {};
}

result<void> sim_stream::wait(event& ev) {
  if (ev.native() == nullptr)
    return fail(errc::invalid_argument, "a simulated stream can only wait for a simulated event");
  if (!ev.query())
    tail_ = std::max(tail(), mark_of(ev).done);
  return {};
}

result<void> sim_stream::host_callback(std::function<void()> fn) {
  tail_ = tail();
  dev_->clock().at(tail_, std::move(fn));
  return {};
}

void sim_stream::busy(sim_clock::duration d) {
  tail_ = dev_->take_compute(tail(), d);
}

void sim_stream::delay(sim_clock::duration d) {
  tail_ = tail() + d;
}

} // namespace aeg::gpu
