#pragma once

#include "coro/assert.hpp"
#include "coro/error.hpp"
#include "coro/task.hpp"
#include "coro/waiter.hpp"

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>

namespace aeg::coro {

/// A bounded multi-producer multi-consumer channel. `co_await send(v)` suspends while the buffer
/// is full; `co_await receive()` suspends while it is empty and yields `std::nullopt` once the
/// channel is closed and drained. Thread-safe; waiters resume on their own executors. Values are
/// delivered in the order their sends completed. The channel must outlive its waiters.
template <class T>
class channel {
  struct recv_waiter : waiter {
    using waiter::waiter;
    std::optional<T> value;
  };
  struct send_waiter : waiter {
    using waiter::waiter;
    std::optional<T> value;
  };

public:
  /// A channel that buffers up to `capacity` values (at least 1).
  explicit channel(std::size_t capacity) : capacity_(capacity) {
    AEG_ASSERT(capacity > 0, "a channel needs a capacity of at least 1");
  }
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  /// Closes the channel: waiting and later sends fail with `errc::closed`; receivers drain what
  /// is buffered, then get `std::nullopt`.
  void close() {
    std::deque<std::shared_ptr<recv_waiter>> receivers;
    std::deque<std::shared_ptr<send_waiter>> senders;
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      receivers.swap(receivers_);
      senders.swap(senders_);
    }
    for (auto& r : receivers)
      r->fire();
    for (auto& s : senders)
      s->fire();
  }

  bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return buffer_.size();
  }

  std::size_t capacity() const noexcept { return capacity_; }

  /// Sends without waiting. False when the buffer is full or the channel closed (`v` untouched).
  bool try_send(T& v) {
    std::shared_ptr<recv_waiter> r;
    {
      std::lock_guard lock(mutex_);
      if (closed_)
        return false;
      r = pop_receiver();
      if (r) {
        r->value.emplace(std::move(v));
      } else if (buffer_.size() < capacity_) {
        buffer_.push_back(std::move(v));
      } else {
        return false;
      }
    }
    if (r)
      r->post();
    return true;
  }

  /// Receives without waiting.
  std::optional<T> try_receive() {
    std::shared_ptr<send_waiter> s;
    std::optional<T> out;
    {
      std::lock_guard lock(mutex_);
      if (buffer_.empty())
        return std::nullopt;
      out.emplace(std::move(buffer_.front()));
      buffer_.pop_front();
      s = refill_from_sender();
    }
    if (s)
      s->post();
    return out;
  }

  class [[nodiscard]] send_awaiter {
  public:
    send_awaiter(channel& ch, T v, std::stop_token token)
        : ch_(ch), value_(std::move(v)), token_(std::move(token)) {}
    ~send_awaiter() {
      stop_.reset();
      if (waiter_)
        waiter_->abandon();
    }
    bool await_ready() noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      std::shared_ptr<recv_waiter> r;
      {
        // Publishing and arming happen under the channel lock, so a receiver that takes our
        // value does so entirely before or after; the stop callback only touches the waiter.
        std::lock_guard lock(ch_.mutex_);
        if (ch_.closed_) {
          failed_closed_ = true;
          return false;
        }
        r = ch_.pop_receiver();
        if (r) {
          r->value.emplace(std::move(value_));
        } else if (ch_.buffer_.size() < ch_.capacity_) {
          ch_.buffer_.push_back(std::move(value_));
          return false;
        } else {
          auto w = std::make_shared<send_waiter>(h, executor_of(h));
          w->value.emplace(std::move(value_));
          waiter_ = w;
          ch_.senders_.push_back(w);
          if (token_.stop_possible())
            stop_.emplace(token_, on_stop{w}); // claims at once when stop was requested
          return w->arm(); // last touch of this awaiter: it may resume elsewhere now
        }
      }
      r->post();
      return false;
    }
    /// Throws `error_exception` (closed) or `cancelled_exception`.
    void await_resume() {
      if (failed_closed_)
        throw error_exception(error{errc::closed, "send on a closed channel"});
      if (!waiter_)
        return;
      if (waiter_->cancelled())
        throw cancelled_exception("channel send cancelled");
      if (waiter_->value) // not taken: the channel closed while we waited
        throw error_exception(error{errc::closed, "channel closed while sending"});
    }

  private:
    struct on_stop {
      std::shared_ptr<send_waiter> w;
      void operator()() const noexcept { w->fire(true); }
    };
    channel& ch_;
    T value_;
    std::stop_token token_;
    bool failed_closed_ = false;
    std::shared_ptr<send_waiter> waiter_;
    std::optional<std::stop_callback<on_stop>> stop_;
  };

  class [[nodiscard]] receive_awaiter {
  public:
    receive_awaiter(channel& ch, std::stop_token token) : ch_(ch), token_(std::move(token)) {}
    ~receive_awaiter() {
      stop_.reset();
      if (waiter_)
        waiter_->abandon();
    }
    bool await_ready() noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      std::shared_ptr<send_waiter> s;
      {
        // As in send: publish and arm under the channel lock (see there).
        std::lock_guard lock(ch_.mutex_);
        if (!ch_.buffer_.empty()) {
          ready_.emplace(std::move(ch_.buffer_.front()));
          ch_.buffer_.pop_front();
          s = ch_.refill_from_sender();
        } else if (ch_.closed_) {
          return false;
        } else {
          auto w = std::make_shared<recv_waiter>(h, executor_of(h));
          waiter_ = w;
          ch_.receivers_.push_back(w);
          if (token_.stop_possible())
            stop_.emplace(token_, on_stop{w});
          return w->arm(); // last touch of this awaiter: it may resume elsewhere now
        }
      }
      if (s)
        s->post();
      return false;
    }
    /// The value, or `std::nullopt` when the channel is closed and drained. Throws
    /// `cancelled_exception` when the stop token fired first.
    std::optional<T> await_resume() {
      if (!waiter_)
        return std::move(ready_);
      if (waiter_->cancelled())
        throw cancelled_exception("channel receive cancelled");
      return std::move(waiter_->value);
    }

  private:
    struct on_stop {
      std::shared_ptr<recv_waiter> w;
      void operator()() const noexcept { w->fire(true); }
    };
    channel& ch_;
    std::stop_token token_;
    std::optional<T> ready_;
    std::shared_ptr<recv_waiter> waiter_;
    std::optional<std::stop_callback<on_stop>> stop_;
  };

  /// Sends `v`, waiting while the buffer is full.
  send_awaiter send(T v, std::stop_token token = {}) {
    return send_awaiter{*this, std::move(v), std::move(token)};
  }
  /// Receives the next value, waiting while the buffer is empty.
  receive_awaiter receive(std::stop_token token = {}) {
    return receive_awaiter{*this, std::move(token)};
  }

private:
  // First waiting receiver that can still be resumed (cancelled ones are skipped), claimed.
  std::shared_ptr<recv_waiter> pop_receiver() {
    while (!receivers_.empty()) {
      auto r = std::move(receivers_.front());
      receivers_.pop_front();
      if (r->claim())
        return r;
    }
    return nullptr;
  }

  // After a receive made room: moves the first live waiting sender's value into the buffer.
  std::shared_ptr<send_waiter> refill_from_sender() {
    while (!senders_.empty()) {
      auto s = std::move(senders_.front());
      senders_.pop_front();
      if (s->claim()) {
        buffer_.push_back(std::move(*s->value));
        s->value.reset();
        return s;
      }
    }
    return nullptr;
  }

  const std::size_t capacity_;
  mutable std::mutex mutex_;
  bool closed_ = false;
  std::deque<T> buffer_;
  std::deque<std::shared_ptr<recv_waiter>> receivers_;
  std::deque<std::shared_ptr<send_waiter>> senders_;
};

} // namespace aeg::coro
