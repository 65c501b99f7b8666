#include "gpu/cuda/cuda_device.hpp"

#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace aeg::gpu::cuda {

namespace {

tl::unexpected<error> cuda_fail(errc code, const std::string& what, cudaError_t err) {
  // Returned as a value, so cleared from the thread's last error: the check after a later kernel
  // launch on this thread (cudaGetLastError) would otherwise fail that launch with it.
  cudaGetLastError();
  return fail(code, what + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

bool means_no_gpu(cudaError_t err) {
  return err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ||
         err == cudaErrorInitializationError || err == cudaErrorSystemDriverMismatch ||
         err == cudaErrorCompatNotSupportedOnDevice || err == cudaErrorDevicesUnavailable ||
         err == cudaErrorStubLibrary || err == cudaErrorNotSupported || err == cudaErrorUnknown ||
         err == cudaErrorOperatingSystem;
}

// Host functions run on a CUDA driver thread; they carry their function on the heap.
void CUDART_CB run_host_function(void* arg) noexcept {
  auto* fn = static_cast<std::function<void()>*>(arg);
  (*fn)();
  delete fn;
}

result<void> launch_host_function(cudaStream_t s, std::function<void()> fn) {
  auto* heap = new std::function<void()>(std::move(fn));
  if (auto err = cudaLaunchHostFunc(s, run_host_function, heap); err != cudaSuccess) {
    delete heap;
    return cuda_fail(errc::device_error, "cudaLaunchHostFunc", err);
  }
  return {};
}

// Completion comes from host functions, and a fault (a kernel's illegal address, an uncorrectable
// ECC error) makes the context's error sticky: the host functions behind it never run, and their
// events would never complete. While records are outstanding, a driver-side thread asks the
// context every 100 ms; on a fault every outstanding event fails with the driver's reason, and
// later records fail at once. The serving path never waits here.
class watchdog {
public:
  explicit watchdog(int ordinal) : st_(std::make_shared<state>()) {
    st_->ordinal = ordinal;
    // The thread shares the state rather than pointing at this object: a failure callback it
    // runs may drop the last reference to the device, destroying this object on that thread.
    thread_ = std::thread([st = st_] { watch(*st); });
  }
  ~watchdog() {
    {
      std::lock_guard lock(st_->mutex);
      st_->stop = true;
    }
    st_->wake.notify_all();
    if (thread_.get_id() == std::this_thread::get_id())
      thread_.detach(); // destroyed by its own callback: it ends on its own, holding the state
    else
      thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

  // Enqueues the completion of `ev`'s next record on `s`; on a fault the event fails instead.
  result<void> record(cudaStream_t s, event& ev) {
    const auto gen = ev.begin_record();
    auto failed = ev.failer(gen);
    auto finished = std::make_shared<std::atomic<bool>>(false);
    std::string fault;
    {
      std::lock_guard lock(st_->mutex);
      fault = st_->fault;
      if (fault.empty())
        st_->outstanding.push_back({finished, failed});
    }
    if (!fault.empty()) { // outside the lock: the failure resumes whoever awaits the event
      failed(fault);
      return fail(errc::device_error, fault);
    }
    st_->wake.notify_one();
    auto launched = launch_host_function(s, [done = ev.completer(gen), finished] {
      finished->store(true);
      done();
    });
    // Nothing will complete this record: say so to whoever awaits it, and stop watching it (the
    // watchdog would otherwise poll for it until the process ends).
    if (!launched) {
      finished->store(true);
      failed(launched.error().message);
    }
    return launched;
  }

private:
  struct pending {
    std::shared_ptr<std::atomic<bool>> finished;
    std::function<void(const std::string&)> failed;
  };
  struct state {
    int ordinal = 0;
    std::mutex mutex;
    std::condition_variable wake;
    std::vector<pending> outstanding;
    std::string fault; // set once, under mutex
    bool stop = false;
  };

  static void watch(state& st) {
    cudaSetDevice(st.ordinal);
    cudaStream_t probe = nullptr; // an idle stream: querying it reports the context's state
    cudaStreamCreateWithFlags(&probe, cudaStreamNonBlocking);
    std::unique_lock lock(st.mutex);
    for (;;) {
      st.wake.wait(lock, [&] { return st.stop || !st.outstanding.empty(); });
      if (st.stop)
        break;
      st.wake.wait_for(lock, std::chrono::milliseconds(100), [&] { return st.stop; });
      if (st.stop)
        break;
      std::erase_if(st.outstanding, [](const pending& p) { return p.finished->load(); });
      if (st.outstanding.empty() || !st.fault.empty())
        continue;
      const auto err = cudaStreamQuery(probe);
      if (err == cudaSuccess || err == cudaErrorNotReady)
        continue;
      st.fault = std::string("the GPU failed: ") + cudaGetErrorName(err) + " (" +
                 cudaGetErrorString(err) + "); restart the process";
      const std::string why = st.fault;
      auto failing = std::move(st.outstanding);
      st.outstanding.clear();
      lock.unlock();
      for (auto& p : failing)
        p.failed(why);
      lock.lock();
    }
    lock.unlock();
    if (probe)
      cudaStreamDestroy(probe);
  }

  std::shared_ptr<state> st_;
  std::thread thread_;
};

class cuda_stream final : public stream {
public:
  cuda_stream(int ordinal, cudaStream_t s, std::shared_ptr<watchdog> dog)
      : ordinal_(ordinal), stream_(s), watchdog_(std::move(dog)) {}
  ~cuda_stream() override {
    // Work already enqueued still completes; the driver releases the stream afterwards.
    cudaSetDevice(ordinal_);
    cudaStreamDestroy(stream_);
  }

  result<void> copy(void* dst, const void* src, std::size_t bytes, copy_kind kind) override {
    if (auto err = cudaSetDevice(ordinal_); err != cudaSuccess)
      return cuda_fail(errc::device_error, "cudaSetDevice", err);
    cudaMemcpyKind k = kind == copy_kind::host_to_device   ? cudaMemcpyHostToDevice
                       : kind == copy_kind::device_to_host ? cudaMemcpyDeviceToHost
                                                           : cudaMemcpyDeviceToDevice;
    if (auto err = cudaMemcpyAsync(dst, src, bytes, k, stream_); err != cudaSuccess)
      return cuda_fail(errc::device_error, "cudaMemcpyAsync of " + std::to_string(bytes) + " bytes",
                       err);
    return {};
  }

  result<void> record(event& ev) override {
    if (auto err = cudaEventRecord(static_cast<cudaEvent_t>(ev.native()), stream_);
        err != cudaSuccess)
      return cuda_fail(errc::device_error, "cudaEventRecord", err);
    return watchdog_->record(stream_, ev);
  }

  result<void> wait(event& ev) override {
    if (auto err = cudaStreamWaitEvent(stream_, static_cast<cudaEvent_t>(ev.native()), 0);
        err != cudaSuccess)
      return cuda_fail(errc::device_error, "cudaStreamWaitEvent", err);
    return {};
  }

  result<void> host_callback(std::function<void()> fn) override {
    if (!fn)
      return fail(errc::invalid_argument, "host_callback needs a function");
    return launch_host_function(stream_, std::move(fn));
  }

  backend_kind kind() const noexcept override { return backend_kind::cuda; }
  void* native_handle() const noexcept override { return stream_; }

  result<void> make_current() override {
    if (auto err = cudaSetDevice(ordinal_); err != cudaSuccess)
      return cuda_fail(errc::device_error, "cudaSetDevice", err);
    return {};
  }

private:
  int ordinal_;
  cudaStream_t stream_;
  std::shared_ptr<watchdog> watchdog_;
};

class cuda_device final : public device {
public:
  cuda_device(int ordinal, std::size_t capacity, std::string product)
      : ordinal_(ordinal), capacity_(capacity), product_(std::move(product)) {}

  std::string name() const override {
    return "cuda:" + std::to_string(ordinal_) + " (" + product_ + ")";
  }
  backend_kind kind() const noexcept override { return backend_kind::cuda; }
  std::size_t capacity_bytes() const noexcept override { return capacity_; }
  std::size_t used_bytes() const noexcept override { return used_.load(); }

  result<buffer> allocate(std::size_t bytes) override {
    if (bytes == 0)
      return fail(errc::invalid_argument, "cannot allocate 0 bytes on " + name());
    std::size_t used = used_.load();
    do {
      if (bytes > capacity_ - used)
        return fail(errc::out_of_memory, name() + ": cannot allocate " + std::to_string(bytes) +
                                             " bytes, " + std::to_string(used) + " of " +
                                             std::to_string(capacity_) + " in use");
    } while (!used_.compare_exchange_weak(used, used + bytes));
    void* p = nullptr;
    if (auto err = cudaSetDevice(ordinal_); err != cudaSuccess) {
      used_.fetch_sub(bytes);
      return cuda_fail(errc::device_error, "cudaSetDevice", err);
    }
    if (auto err = cudaMalloc(&p, bytes); err != cudaSuccess) {
      used_.fetch_sub(bytes);
      return cuda_fail(errc::out_of_memory, name() + ": cudaMalloc of " + std::to_string(bytes),
                       err);
    }
    return buffer{shared_from_this(), p, bytes, buffer::space::device};
  }

  result<buffer> allocate_pinned(std::size_t bytes) override {
    if (bytes == 0)
      return fail(errc::invalid_argument, "cannot allocate 0 pinned bytes");
    void* p = nullptr;
    if (auto err = cudaMallocHost(&p, bytes); err != cudaSuccess)
      return cuda_fail(errc::out_of_memory, "cudaMallocHost of " + std::to_string(bytes), err);
    return buffer{shared_from_this(), p, bytes, buffer::space::pinned_host};
  }

  result<std::shared_ptr<void>> pin(void* ptr, std::size_t bytes) override {
    if (auto err = cudaHostRegister(ptr, bytes, cudaHostRegisterDefault); err != cudaSuccess) {
      // A shared image mapped read-only (another process built it) registers only as read-only
      // where the GPU does not use the host's page tables; the device only copies from it.
      cudaGetLastError();
      if (cudaHostRegister(ptr, bytes, cudaHostRegisterPortable | cudaHostRegisterReadOnly) !=
          cudaSuccess)
        return cuda_fail(errc::device_error,
                         "cudaHostRegister of " + std::to_string(bytes) + " bytes", err);
    }
    return std::shared_ptr<void>(ptr, [](void* p) { cudaHostUnregister(p); });
  }

  result<std::unique_ptr<stream>> create_stream() override {
    if (auto err = cudaSetDevice(ordinal_); err != cudaSuccess)
      return cuda_fail(errc::device_error, "cudaSetDevice", err);
    cudaStream_t s = nullptr;
    if (auto err = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking); err != cudaSuccess)
      return cuda_fail(errc::device_error, "cudaStreamCreate", err);
    return std::unique_ptr<stream>(std::make_unique<cuda_stream>(ordinal_, s, watchdog_));
  }

  result<std::unique_ptr<event>> create_event() override {
    if (auto err = cudaSetDevice(ordinal_); err != cudaSuccess)
      return cuda_fail(errc::device_error, "cudaSetDevice", err);
    cudaEvent_t e = nullptr;
    if (auto err = cudaEventCreateWithFlags(&e, cudaEventDisableTiming); err != cudaSuccess)
      return cuda_fail(errc::device_error, "cudaEventCreate", err);
    return std::make_unique<event>(e,
                                   [](void* p) { cudaEventDestroy(static_cast<cudaEvent_t>(p)); });
  }

protected:
  void release(void* ptr, std::size_t bytes, buffer::space where) noexcept override {
    cudaSetDevice(ordinal_);
    if (where == buffer::space::device) {
      cudaFree(ptr);
      used_.fetch_sub(bytes);
    } else {
      cudaFreeHost(ptr);
    }
  }

private:
  int ordinal_;
  std::size_t capacity_;
  std::string product_;
  std::atomic<std::size_t> used_{0};
  // Shared with the streams, which may outlive the device object.
  std::shared_ptr<watchdog> watchdog_ = std::make_shared<watchdog>(ordinal_);
};

} // namespace

result<int> device_count() {
  int n = 0;
  auto err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (means_no_gpu(err))
      return cuda_fail(errc::unavailable, "no GPU: CUDA cannot use a device here", err);
    return cuda_fail(errc::device_error, "cudaGetDeviceCount", err);
  }
  if (n == 0)
    return fail(errc::unavailable, "no GPU: CUDA sees no device");
  return n;
}

result<std::shared_ptr<device>> make_device(int ordinal, std::size_t capacity_bytes) {
  AEG_TRY_ASSIGN(auto n, device_count());
  if (ordinal < 0 || ordinal >= n)
    return fail(errc::not_found, "no CUDA device " + std::to_string(ordinal) + ": " +
                                     std::to_string(n) + " visible");
  if (auto err = cudaSetDevice(ordinal); err != cudaSuccess)
    return cuda_fail(errc::device_error, "cudaSetDevice", err);
  cudaDeviceProp prop{};
  if (auto err = cudaGetDeviceProperties(&prop, ordinal); err != cudaSuccess)
    return cuda_fail(errc::device_error, "cudaGetDeviceProperties", err);
  std::size_t free = 0, total = 0;
  if (auto err = cudaMemGetInfo(&free, &total); err != cudaSuccess)
    return cuda_fail(errc::device_error, "cudaMemGetInfo", err);
  if (capacity_bytes == 0)
    capacity_bytes = free;
  if (capacity_bytes > free)
    return fail(errc::out_of_memory, "cuda:" + std::to_string(ordinal) + " has " +
                                         std::to_string(free) + " bytes free, " +
                                         std::to_string(capacity_bytes) + " asked for");
  return std::shared_ptr<device>(
      std::make_shared<cuda_device>(ordinal, capacity_bytes, std::string(prop.name)));
}

} // namespace aeg::gpu::cuda
