#include "gpu/sim/sim_device.hpp"

#include <algorithm>
#include <deque>
#include <sys/mman.h>

namespace aeg::gpu {

namespace {

// A record on shared cores: whether the clock has reached it, and the streams waiting for that.
struct sim_reach {
  bool done = false;
  std::vector<std::function<void()>> waiters;
};

// What a simulated event carries about its latest record, which a stream that waits for it
// must not start before: when its work ends (on a device's own engines) or its reach (on
// shared cores, where that end is not known yet).
struct sim_mark {
  sim_clock::time_point done{};
  std::shared_ptr<sim_reach> reach;
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
                       int ordinal, std::size_t capacity_bytes, std::shared_ptr<sim_cores> cores)
    : clock_(std::move(clock)), profile_(std::move(profile)), ordinal_(ordinal),
      capacity_(capacity_bytes != 0 ? capacity_bytes : profile_->memory_bytes),
      cores_(std::move(cores)) {}

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
  const auto start = std::max(link, earliest);
  link = start + sim_seconds(profile_->copy_seconds + static_cast<double>(bytes) / bw);
  // On shared cores a copy is a thread beside the kernels' threads: it takes its time from the
  // link and weighs its share among the steps meanwhile.
  if (cores_)
    cores_->hold(profile_->copy_compute_share, start, link);
  return link;
}

// --- sim_lane ----------------------------------------------------------------------------------

// A stream's work on shared cores, as a queue the clock works through: each call starts when
// the one before has ended, and its own end is known only then. What the clock and the cores
// call back holds the lane weakly: a stream that goes takes its queue with it.
struct sim_lane : std::enable_shared_from_this<sim_lane> {
  struct call {
    enum class what { busy, delay, copy, wait, record, callback, reached } kind;
    sim_clock::duration d{};
    copy_kind link{};
    std::size_t bytes = 0;
    std::shared_ptr<sim_reach> reach;                      // wait, record
    sim_clock::time_point until{};                         // wait for a timeline's record
    std::function<void()> fn;                              // record's completer, callback
    std::function<void(sim_clock::time_point)> on_reached; // reached
  };

  explicit sim_lane(sim_device& d) : dev(d) {}

  void push(call c) {
    calls.push_back(std::move(c));
    if (!in_flight)
      pump();
  }

  // The call at the front has ended: on to the next.
  std::function<void()> resumer() {
    return [self = weak_from_this()] {
      if (auto lane = self.lock(); lane && !lane->calls.empty()) {
        lane->in_flight = false;
        lane->calls.pop_front();
        lane->pump();
      }
    };
  }

  // Completes a record's event, and wakes the streams that wait for it, from the clock.
  void complete(call& c) {
    dev.clock().at(dev.clock().now(), [reach = std::move(c.reach), fn = std::move(c.fn)] {
      reach->done = true;
      fn();
      auto waiters = std::move(reach->waiters);
      for (auto& w : waiters)
        w();
    });
  }

  // Starts the calls at the front, up to the first that takes time.
  void pump() {
    auto& clock = dev.clock();
    while (!in_flight && !calls.empty()) {
      auto& c = calls.front();
      switch (c.kind) {
      case call::what::busy:
        in_flight = true;
        dev.cores()->run(c.d, resumer());
        return;
      case call::what::delay:
        in_flight = true;
        clock.at(clock.now() + c.d, resumer());
        return;
      case call::what::copy:
        in_flight = true;
        clock.at(dev.take_link(c.link, clock.now(), c.bytes), resumer());
        return;
      case call::what::wait:
        if (c.reach && !c.reach->done) {
          in_flight = true;
          c.reach->waiters.push_back(resumer());
          return;
        }
        if (!c.reach && c.until > clock.now()) {
          in_flight = true;
          clock.at(c.until, resumer());
          return;
        }
        break;
      case call::what::record:
        complete(c);
        break;
      case call::what::callback:
        clock.at(clock.now(), std::move(c.fn));
        break;
      case call::what::reached: {
        // Off the queue first: what it is told may queue more on this stream.
        auto fn = std::move(c.on_reached);
        calls.pop_front();
        fn(clock.now());
        continue;
      }
      }
      calls.pop_front();
    }
  }

  sim_device& dev; // the stream that owns the lane holds the device
  std::deque<call> calls;
  bool in_flight = false; // the front call has started and not ended
};

// --- sim_stream --------------------------------------------------------------------------------

sim_stream::sim_stream(std::shared_ptr<sim_device> dev) : dev_(std::move(dev)) {
  if (dev_->cores() != nullptr)
    lane_ = std::make_shared<sim_lane>(*dev_);
}

sim_stream::~sim_stream() {
  if (!lane_)
    return;
  for (auto& c : lane_->calls)
    if (c.kind == sim_lane::call::what::record)
      lane_->complete(c);
  // Nothing is left to start, should the lane outlive the stream (a stream that goes while its
  // lane runs a call). Work in flight keeps its share of the cores until it ends, as a kernel
  // already running would.
  lane_->calls.clear();
  lane_->in_flight = true;
}

sim_clock::time_point sim_stream::tail() const noexcept {
  return std::max(tail_, dev_->clock().now());
}

result<void> sim_stream::copy(void*, const void*, std::size_t bytes, copy_kind kind) {
  if (lane_)
    lane_->push({.kind = sim_lane::call::what::copy, .link = kind, .bytes = bytes});
  else
    tail_ = dev_->take_link(kind, tail(), bytes);
  return {};
}

result<void> sim_stream::record(event& ev) {
  auto* mark = static_cast<sim_mark*>(ev.native());
  if (mark == nullptr)
    return fail(errc::invalid_argument, "a simulated stream can only record a simulated event");
  const auto gen = ev.begin_record();
  if (lane_) {
    mark->reach = std::make_shared<sim_reach>();
    lane_->push(
        {.kind = sim_lane::call::what::record, .reach = mark->reach, .fn = ev.completer(gen)});
    return {};
  }
  mark->reach = nullptr;
  mark->done = tail();
  dev_->clock().at(mark->done, ev.completer(gen));
  return {};
}

result<void> sim_stream::wait(event& ev) {
  if (ev.native() == nullptr)
    return fail(errc::invalid_argument, "a simulated stream can only wait for a simulated event");
  if (ev.query())
    return {};
  const auto& mark = mark_of(ev);
  if (lane_)
    lane_->push({.kind = sim_lane::call::what::wait, .reach = mark.reach, .until = mark.done});
  else if (mark.reach == nullptr)
    tail_ = std::max(tail(), mark.done);
  else
    return fail(errc::invalid_argument, "a stream on a device's own engines cannot wait for work "
                                        "on shared cores: give every device of a simulation "
                                        "the same profile");
  return {};
}

result<void> sim_stream::host_callback(std::function<void()> fn) {
  if (lane_) {
    lane_->push({.kind = sim_lane::call::what::callback, .fn = std::move(fn)});
    return {};
  }
  tail_ = tail();
  dev_->clock().at(tail_, std::move(fn));
  return {};
}

void sim_stream::busy(sim_clock::duration d) {
  if (lane_)
    lane_->push({.kind = sim_lane::call::what::busy, .d = d});
  else
    tail_ = tail() + d;
}

void sim_stream::delay(sim_clock::duration d) {
  if (lane_)
    lane_->push({.kind = sim_lane::call::what::delay, .d = d});
  else
    tail_ = tail() + d;
}

void sim_stream::when_reached(std::function<void(sim_clock::time_point)> fn) {
  if (lane_)
    lane_->push({.kind = sim_lane::call::what::reached, .on_reached = std::move(fn)});
  else
    fn(tail());
}

} // namespace aeg::gpu
