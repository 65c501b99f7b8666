#include "apps/server/http_connection.hpp"

#include <asio/write.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <random>
#include <tuple>

namespace aeg::server {

namespace {

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

// "req-" and 16 hex digits: unique in a process, and across restarts in practice.
std::string new_request_id() {
  static const std::uint32_t prefix = std::random_device{}();
  static std::atomic<std::uint32_t> counter{0};
  return fmt::format("req-{:08x}{:08x}", prefix, counter.fetch_add(1));
}

// A client's X-Request-Id, when it is one a log can carry as it is (1 to 128 characters of
// letters, digits and ._:-/); else a new one.
std::string request_id_of(const http_request& req) {
  const auto* id = req.header("x-request-id");
  if (id != nullptr && !id->empty() && id->size() <= 128 &&
      std::all_of(id->begin(), id->end(), [](unsigned char c) {
        return std::isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-' || c == '/';
      }))
    return *id;
  return new_request_id();
}

} // namespace

std::string http_connection::make_request_id() {
  return new_request_id();
}

http_connection::http_connection(asio::ip::tcp::socket socket, request_limits limits,
                                 connection_timeouts timeouts, connection_hooks hooks)
    : sock_(std::move(socket)), parser_(limits), timeouts_(timeouts), hooks_(std::move(hooks)),
      timer_(sock_.get_executor()), write_timer_(sock_.get_executor()),
      max_input_(input_cap(limits)) {
  asio::error_code ec;
  client_ = sock_.remote_endpoint(ec).address().to_string();
}

// The most unread input a connection may hold: one largest request and a read's worth.
std::size_t http_connection::input_cap(const request_limits& lim) {
  const std::size_t read = std::tuple_size_v<decltype(buf_)>;
  return lim.max_body_bytes > SIZE_MAX - lim.max_header_bytes - read
             ? SIZE_MAX
             : lim.max_body_bytes + lim.max_header_bytes + read;
}

void http_connection::start() {
  arm(wait_for::next_request, timeouts_.idle_seconds);
  read();
}

bool http_connection::idle() const noexcept {
  return phase_ == phase::lingering ||
         (phase_ == phase::reading && !parser_.in_progress() && out_.empty());
}

// --- reading ------------------------------------------------------------------------------

void http_connection::read() {
  if (phase_ == phase::closed)
    return;
  sock_.async_read_some(asio::buffer(buf_),
                        [this, self = shared_from_this()](asio::error_code ec, std::size_t n) {
                          if (phase_ == phase::closed)
                            return;
                          if (ec)
                            return close(); // the client went away: what runs for it stops
                          if (phase_ == phase::refusing || phase_ == phase::lingering)
                            return read(); // what the client still sends is read and dropped
                          input_.append(buf_.data(), n);
                          // More unread input than one largest request: a client pipelining
                          // without reading its answers. Refuse to buffer more.
                          if (input_.size() > max_input_)
                            return close();
                          process();
                          read();
                        });
}

// Parses what has arrived; hands up a whole request, one at a time: the next is parsed once
// this one's answer is written.
void http_connection::process() {
  while (phase_ == phase::reading && out_.empty() && !input_.empty()) {
    if (waiting_ != wait_for::rest_of_request) // once per request: a trickle does not extend it
      arm(wait_for::rest_of_request, timeouts_.header_seconds);
    auto o = parser_.feed(input_);
    input_.erase(0, o.consumed);
    if (o.state == request_parser::status::error)
      return refuse(o.http_status, std::move(o.error));
    if (o.state == request_parser::status::need_more) {
      if (o.send_continue)
        write(std::string(continue_response));
      return;
    }
    timer_.cancel();
    waiting_ = wait_for::nothing;
    ++request_epoch_;
    auto req = parser_.take();
    exchange_ = {req.keep_alive && !closing_down_,
                 req.chunked_ok,
                 req.method == "HEAD",
                 false,
                 false,
                 request_id_of(req)};
    phase_ = phase::answering;
    const std::string what = req.method + " " + req.path;
    try {
      hooks_.request(*this, std::move(req));
    } catch (const std::exception& e) {
      // A fault in answering one request must not take the server down: drop this connection
      // (its request, if any, is cancelled) and keep serving the others.
      if (hooks_.log)
        hooks_.log(
            fmt::format("internal error answering {}: {}; closing the connection", what, e.what()));
      return close();
    }
  }
}

// The request could not be read: it is answered, the rest of the input is dropped (so that
// closing does not reset the connection before the client reads the answer), and it closes.
void http_connection::refuse(int status, std::string why) {
  phase_ = phase::refusing;
  exchange_.request_id = new_request_id();
  exchange_.keep_alive = false;
  input_.clear();
  hooks_.refused(*this, status, std::move(why));
}

// --- answering ----------------------------------------------------------------------------

void http_connection::respond(int status, header_list headers, std::string_view body,
                              std::string_view content_type) {
  if (phase_ != phase::answering && phase_ != phase::refusing)
    return;
  headers.emplace_back("Content-Type", std::string(content_type));
  headers.emplace_back("X-Request-Id", exchange_.request_id);
  if (closing_down_ || status >= 500 || status == 408 || status == 413 || status == 431)
    exchange_.keep_alive = false;
  std::string out = format_response(status, headers, body, exchange_.keep_alive);
  if (exchange_.head_only)
    out.resize(out.size() - body.size()); // the head a GET would get, no body
  exchange_.complete = true;
  answer_.reset();
  write(std::move(out));
}

void http_connection::await_answer(std::shared_ptr<pending_answer> answer) {
  if (phase_ == phase::answering)
    answer_ = std::move(answer);
}

void http_connection::begin_stream(header_list headers) {
  if (phase_ != phase::answering || exchange_.streaming)
    return;
  exchange_.streaming = true;
  headers.emplace_back("X-Request-Id", exchange_.request_id);
  if (exchange_.chunked && !closing_down_) {
    write(format_chunked_head(200, headers, exchange_.keep_alive));
    return;
  }
  exchange_.keep_alive = false; // an HTTP/1.0 client learns the stream's end from the close
  exchange_.chunked = false;
  write(format_close_delimited_head(200, headers));
}

std::string http_connection::body_piece(std::string_view data) const {
  return exchange_.chunked ? format_chunk(data) : std::string(data);
}

void http_connection::stream(std::string_view data) {
  if (exchange_.streaming && phase_ == phase::answering)
    write(body_piece(data));
}

void http_connection::end_stream(std::string_view data) {
  if (!exchange_.streaming || phase_ != phase::answering)
    return;
  exchange_.complete = true;
  answer_.reset();
  write(body_piece(data) + (exchange_.chunked ? std::string(last_chunk()) : std::string()));
}

// The answer is written: the next request, or the end of the connection.
void http_connection::finish_answer() {
  if (closing_down_)
    return close();
  if (!exchange_.keep_alive)
    return linger();
  phase_ = phase::reading;
  exchange_ = {};
  arm(wait_for::next_request, timeouts_.idle_seconds);
  process(); // the next pipelined request
  if (phase_ == phase::reading && parser_.in_progress() && waiting_ != wait_for::rest_of_request)
    arm(wait_for::rest_of_request, timeouts_.header_seconds); // a body still to come
}

// --- writing ------------------------------------------------------------------------------

void http_connection::write(std::string data) {
  if (phase_ == phase::closed || data.empty())
    return;
  out_.push_back(std::move(data));
  if (!writing_)
    flush();
}

void http_connection::flush() {
  if (out_.empty()) {
    writing_ = false;
    if ((phase_ == phase::answering || phase_ == phase::refusing) && exchange_.complete)
      finish_answer();
    else if (phase_ == phase::reading)
      process(); // input that arrived while an interim answer was written
    return;
  }
  writing_ = true;
  // A client that stops reading would pin this connection (and its request) for ever.
  write_timer_.expires_after(seconds(timeouts_.write_seconds));
  write_timer_.async_wait(
      [this, self = shared_from_this(), epoch = ++write_epoch_](asio::error_code ec) {
        if (ec || phase_ == phase::closed || epoch != write_epoch_)
          return;
        if (hooks_.log)
          hooks_.log(fmt::format("a client read nothing for {} s; dropping its connection",
                                 timeouts_.write_seconds));
        close();
      });
  asio::async_write(sock_, asio::buffer(out_.front()),
                    [this, self = shared_from_this()](asio::error_code ec, std::size_t) {
                      ++write_epoch_;
                      write_timer_.cancel();
                      if (phase_ == phase::closed)
                        return;
                      if (ec)
                        return close();
                      out_.pop_front();
                      flush();
                    });
}

// --- timers and the end -------------------------------------------------------------------

void http_connection::arm(wait_for what, double secs) {
  waiting_ = what;
  timer_.expires_after(seconds(secs));
  timer_.async_wait(
      [this, self = shared_from_this(), what, epoch = request_epoch_](asio::error_code ec) {
        if (ec || phase_ == phase::closed)
          return;
        switch (what) {
        case wait_for::next_request:
          if (idle())
            close();
          break;
        case wait_for::rest_of_request:
          if (phase_ == phase::reading && epoch == request_epoch_)
            refuse(408,
                   fmt::format("the request did not arrive within {} s", timeouts_.header_seconds));
          break;
        case wait_for::client_close:
          close();
          break;
        case wait_for::nothing:
          break;
        }
      });
}

// Stops sending, then reads and drops what the client still sends until it closes (at most
// 2 s), so that unread request bytes do not make the kernel reset the connection and destroy
// the answer before the client reads it.
void http_connection::linger() {
  if (phase_ == phase::closed || phase_ == phase::lingering)
    return;
  phase_ = phase::lingering;
  input_.clear();
  answer_.reset();
  asio::error_code ec;
  sock_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (ec)
    return close();
  arm(wait_for::client_close, 2);
}

void http_connection::close() {
  if (phase_ == phase::closed)
    return;
  auto self = shared_from_this(); // the server's set may hold the last reference
  phase_ = phase::closed;
  timer_.cancel();
  write_timer_.cancel();
  if (auto answer = std::move(answer_))
    answer->abandon(); // its client is gone: the work stops and frees what it holds
  asio::error_code ec;
  sock_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  sock_.close(ec);
  if (hooks_.closed)
    hooks_.closed(*this);
}

} // namespace aeg::server
