#pragma once

// Runs kernel ops on a device of any backend from a test: uploads host vectors, enqueues, waits
// (sync_wait on an event: tests may block), downloads. The same test body then runs on "cpu"
// and, where a GPU is visible, on "cuda", which is how every CUDA op meets its CPU twin.

#include "coro/sync_wait.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/registry.hpp"
#include "kernels/context.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace aeg::testing {

class op_runner {
public:
  /// A runner on `backend`, or an error (`errc::unavailable` where there is no such device).
  static result<std::unique_ptr<op_runner>> make(const std::string& backend,
                                                 std::size_t capacity_bytes = 256 << 20) {
    auto dev =
        gpu::make_device({.backend = backend, .ordinal = 0, .capacity_bytes = capacity_bytes});
    if (!dev)
      return tl::unexpected(dev.error());
    auto r = std::unique_ptr<op_runner>(new op_runner);
    r->dev_ = *dev;
    auto s = r->dev_->create_stream();
    if (!s)
      return tl::unexpected(s.error());
    r->stream_ = std::move(*s);
    auto ctx = kernels::context::create(*r->stream_);
    if (!ctx)
      return tl::unexpected(ctx.error());
    r->ctx_ = std::move(*ctx);
    auto ev = r->dev_->create_event();
    if (!ev)
      return tl::unexpected(ev.error());
    r->event_ = std::move(*ev);
    return r;
  }

  op_runner(const op_runner&) = delete;
  op_runner& operator=(const op_runner&) = delete;
  ~op_runner() {
    if (stream_ && event_ && stream_->record(*event_)) // staging must outlive the copies
      coro::sync_wait([](gpu::event* e) -> coro::task<void> { co_await *e; }(event_.get()));
  }

  kernels::context& ctx() { return *ctx_; }
  gpu::device& device() { return *dev_; }

  /// Device memory holding `v` (the copy is enqueued; the staging memory lives in the runner).
  template <class T>
  gpu::buffer upload(const std::vector<T>& v) {
    return upload_bytes(v.data(), std::max<std::size_t>(1, v.size()) * sizeof(T),
                        v.size() * sizeof(T));
  }
  gpu::buffer upload_bytes(const void* data, std::size_t capacity, std::size_t bytes) {
    auto d = dev_->allocate(capacity);
    EXPECT_TRUE(d.has_value()) << (d ? "" : d.error().to_string());
    auto h = dev_->allocate_pinned(capacity);
    EXPECT_TRUE(h.has_value());
    if (bytes)
      std::memcpy(h->data(), data, bytes);
    EXPECT_TRUE(stream_->copy(d->data(), h->data(), bytes, gpu::copy_kind::host_to_device));
    staging_.push_back(std::move(*h));
    return std::move(*d);
  }
  /// Zeroed device memory of `n` elements.
  template <class T>
  gpu::buffer zeros(std::size_t n) {
    return upload(std::vector<T>(n));
  }

  /// Waits for everything enqueued, then returns `n` elements of `buf`.
  template <class T>
  std::vector<T> download(const gpu::buffer& buf, std::size_t n) {
    auto h = dev_->allocate_pinned(std::max<std::size_t>(1, n) * sizeof(T));
    EXPECT_TRUE(h.has_value());
    EXPECT_TRUE(
        stream_->copy(h->data(), buf.data(), n * sizeof(T), gpu::copy_kind::device_to_host));
    finish();
    std::vector<T> out(n);
    std::memcpy(out.data(), h->data(), n * sizeof(T));
    return out;
  }

  /// Waits until the stream has run everything enqueued so far.
  void finish() {
    EXPECT_TRUE(stream_->record(*event_));
    coro::sync_wait([](gpu::event* e) -> coro::task<void> { co_await *e; }(event_.get()));
    staging_.clear();
  }

private:
  op_runner() = default;
  std::shared_ptr<gpu::device> dev_;
  std::unique_ptr<gpu::stream> stream_;
  std::unique_ptr<kernels::context> ctx_;
  std::unique_ptr<gpu::event> event_;
  std::vector<gpu::buffer> staging_;
};

} // namespace aeg::testing
