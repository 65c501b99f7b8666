#include "gpu/cpu/cpu_device.hpp"

#include "coro/work.hpp"

#include <concurrentqueue/blockingconcurrentqueue.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace aeg::gpu {

namespace {

constexpr std::size_t alignment = 256;

// A stream: one worker thread runs the queued items in the order they were enqueued. A stream
// waiting on an event stalls its worker, as a GPU stream stalls on cudaStreamWaitEvent; the
// serving path never waits here.
//
// The lock-free queue keeps order only per producer, and an actor enqueues from whichever thread
// runs it at the moment: items from a thread with more queued could overtake earlier ones (a
// weight copy landing after the next model's, a swap after the step it was ordered behind). So
// every item goes in through one producer token, which a short lock hands from caller to caller;
// the worker still drains without locking.
//
// An item that throws faults the stream, as a kernel fault poisons a CUDA context: later work is
// skipped and every event recorded after it fails with the exception's message, so whoever
// awaits it hears why instead of waiting forever or reading results that were never made.
class cpu_stream final : public stream {
public:
  cpu_stream() : queue_(std::make_shared<queue>()), token_(*queue_) {
    worker_ = std::thread([q = queue_, f = fault_] { run(*q, *f); });
  }

  ~cpu_stream() override {
    // Work already enqueued still runs, as on a GPU; then the worker exits.
    enqueue(coro::work{});
    if (worker_.get_id() != std::this_thread::get_id()) {
      worker_.join();
      return;
    }
    // Destroyed by one of its own items (the last owner let go inside a callback): the worker
    // cannot join itself. Run what is queued here, then let it find the end marker and exit.
    run(*queue_, *fault_);
    enqueue(coro::work{});
    worker_.detach();
  }

  result<void> copy(void* dst, const void* src, std::size_t bytes, copy_kind) override {
    if (bytes != 0 && (dst == nullptr || src == nullptr))
      return fail(errc::invalid_argument,
                  "copy of " + std::to_string(bytes) + " bytes with a null pointer");
    enqueue([dst, src, bytes] { std::memcpy(dst, src, bytes); });
    return {};
  }

  result<void> record(event& ev) override {
    const auto gen = ev.begin_record();
    enqueue(
        [f = fault_, done = ev.completer(gen), failed = ev.failer(gen)] {
          if (f->empty())
            done();
          else
            failed(*f);
        },
        true);
    return {};
  }

  result<void> wait(event& ev) override {
    const auto gen = ev.recorded();
    if (gen == 0)
      return {};
    // Work behind a failed event never happened: what waits on it fails too, as on a GPU, where
    // a fault stops the whole device.
    enqueue([f = fault_, stall = ev.staller(gen)] {
      if (auto why = stall(); !why.empty() && f->empty())
        *f = why;
    });
    return {};
  }

  result<void> host_callback(std::function<void()> fn) override {
    if (!fn)
      return fail(errc::invalid_argument, "host_callback needs a function");
    enqueue(std::move(fn));
    return {};
  }

  backend_kind kind() const noexcept override { return backend_kind::cpu; }
  void* native_handle() const noexcept override { return nullptr; }

private:
  // Shared with the worker, which may outlive the stream object by one item (see above).
  struct item {
    coro::work fn;       // empty: the end marker
    bool always = false; // runs after a fault too (records, which then fail)
  };
  using queue = moodycamel::BlockingConcurrentQueue<item>;

  template <class F>
  void enqueue(F&& f, bool always = false) {
    item w{coro::work{std::forward<F>(f)}, always};
    std::lock_guard lock(producer_);
    queue_->enqueue(token_, std::move(w));
  }

  // Runs items until the end marker. After a fault only records run.
  static void run(queue& q, std::string& fault) {
    for (;;) {
      item w;
      q.wait_dequeue(w);
      if (!w.fn)
        return;
      if (!fault.empty() && !w.always)
        continue;
      try {
        w.fn();
      } catch (const std::exception& e) {
        if (fault.empty())
          fault = std::string("a kernel on a CPU stream failed: ") + e.what();
      } catch (...) {
        if (fault.empty())
          fault = "a kernel on a CPU stream failed";
      }
    }
  }

  std::shared_ptr<queue> queue_;
  // Written and read by the worker only (items run there, in order): the first failure.
  std::shared_ptr<std::string> fault_ = std::make_shared<std::string>();
  std::mutex producer_;             // held while enqueuing through token_
  moodycamel::ProducerToken token_; // every item's producer: one order for all callers
  std::thread worker_;
};

} // namespace

cpu_device::cpu_device(int ordinal, std::size_t capacity_bytes)
    : ordinal_(ordinal), capacity_(capacity_bytes) {}

cpu_device::~cpu_device() = default;

std::string cpu_device::name() const {
  return "cpu:" + std::to_string(ordinal_);
}

result<buffer> cpu_device::allocate(std::size_t bytes) {
  if (bytes == 0)
    return fail(errc::invalid_argument, "cannot allocate 0 bytes on " + name());
  const std::size_t rounded = allocation_bytes(bytes);
  std::size_t used = used_.load();
  do {
    if (rounded > capacity_ - used)
      return fail(errc::out_of_memory,
                  name() + ": cannot allocate " + std::to_string(bytes) + " bytes, " +
                      std::to_string(used) + " of " + std::to_string(capacity_) +
                      " in use; free memory or give the device a larger capacity");
  } while (!used_.compare_exchange_weak(used, used + rounded));
  void* p = std::aligned_alloc(alignment, rounded);
  if (p == nullptr) {
    used_.fetch_sub(rounded);
    return fail(errc::out_of_memory,
                name() + ": the host is out of memory for " + std::to_string(bytes) + " bytes");
  }
  std::memset(p, 0, rounded); // backed now, as device memory is: no page faults mid-serving
  return buffer{shared_from_this(), p, bytes, buffer::space::device};
}

result<buffer> cpu_device::allocate_pinned(std::size_t bytes) {
  if (bytes == 0)
    return fail(errc::invalid_argument, "cannot allocate 0 pinned bytes on " + name());
  void* p = std::aligned_alloc(alignment, allocation_bytes(bytes));
  if (p == nullptr)
    return fail(errc::out_of_memory,
                "the host is out of memory for " + std::to_string(bytes) + " pinned bytes");
  std::memset(p, 0, allocation_bytes(bytes)); // pinned memory is resident too
  return buffer{shared_from_this(), p, bytes, buffer::space::pinned_host};
}

result<std::shared_ptr<void>> cpu_device::pin(void* ptr, std::size_t) {
  return std::shared_ptr<void>(ptr, [](void*) {}); // host memory is all the CPU needs
}

void cpu_device::release(void* ptr, std::size_t bytes, buffer::space where) noexcept {
  std::free(ptr);
  if (where == buffer::space::device)
    used_.fetch_sub(allocation_bytes(bytes));
}

result<std::unique_ptr<stream>> cpu_device::create_stream() {
  return std::unique_ptr<stream>(std::make_unique<cpu_stream>());
}

result<std::unique_ptr<event>> cpu_device::create_event() {
  return std::make_unique<event>();
}

} // namespace aeg::gpu
