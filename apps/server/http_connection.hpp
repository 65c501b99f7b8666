#pragma once

#include "apps/server/http.hpp"

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace aeg::server {

/// How long a connection waits for its client.
struct connection_timeouts {
  double header_seconds = 10; ///< a request's line, headers and body must arrive by then
  double idle_seconds = 60;   ///< a keep-alive connection with no request is closed
  double write_seconds = 60;  ///< a client that reads nothing for this long is dropped
};

class http_connection;

/// An answer a connection is waiting for (a completion streaming from the pool, a page gathered
/// from actors). io thread only.
class pending_answer {
public:
  virtual ~pending_answer() = default;
  /// The connection closed first (the client left, or shutdown closed it): stop the work.
  virtual void abandon() = 0;
  /// A shutdown's grace period ran out: end the work now; its end is still answered.
  virtual void cancel() {}
};

/// What a connection hands to the layer above it. Called on the io thread.
struct connection_hooks {
  /// A whole request arrived: answer it, now or later (`respond`, or a stream).
  std::function<void(http_connection&, http_request)> request;
  /// A request could not be read (`status` 400, 408, 411, 413, 415, 417, 431, 501, 505): answer
  /// it with `respond`; the connection closes after that answer.
  std::function<void(http_connection&, int status, std::string why)> refused;
  /// It has closed (forget it).
  std::function<void(http_connection&)> closed;
  /// One line worth telling an operator.
  std::function<void(const std::string&)> log;
};

/// One client connection: HTTP/1.1 transport and framing over Asio. It reads requests (strict
/// limits, timeouts), hands each whole one up, and writes its answer, whole or streamed (chunks
/// for HTTP/1.1, bytes up to the close for HTTP/1.0). Requests are answered one at a time, in
/// order: pipelined ones wait. A client that stops reading is dropped; a closing connection reads
/// and drops what the client still sends, so that the kernel does not reset it before the client
/// has read the last answer. io thread only.
class http_connection : public std::enable_shared_from_this<http_connection> {
public:
  http_connection(asio::ip::tcp::socket socket, request_limits limits, connection_timeouts timeouts,
                  connection_hooks hooks);
  http_connection(const http_connection&) = delete;
  http_connection& operator=(const http_connection&) = delete;

  /// Starts reading.
  void start();
  /// A new X-Request-Id.
  static std::string make_request_id();

  // --- answering the request handed up -------------------------------------------------------
  /// Answers the current request as a whole. A HEAD request gets the head alone. The connection
  /// closes after it when the client asked, on a shutdown, and after 408, 413, 431 and 5xx.
  void respond(int status, header_list headers, std::string_view body,
               std::string_view content_type = "application/json");
  /// The answer comes later: `answer` hears if the connection closes first.
  void await_answer(std::shared_ptr<pending_answer> answer);
  /// Starts a streamed answer (200) with `headers`.
  void begin_stream(header_list headers);
  /// A piece of the streamed answer.
  void stream(std::string_view data);
  /// The last piece; the answer is complete.
  void end_stream(std::string_view data);
  /// Whether the streamed answer has begun.
  bool streaming() const noexcept { return exchange_.streaming; }

  // --- the connection ------------------------------------------------------------------------
  /// Closes at once; an answer still pending is abandoned.
  void close();
  /// The answer being made now ends the connection (a shutdown).
  void end_after_answer() noexcept {
    exchange_.keep_alive = false;
    closing_down_ = true;
  }
  /// Nothing in progress: no request arriving, none being answered, nothing left to write.
  bool idle() const noexcept;
  /// The client's address ("127.0.0.1", "::1"), as it connected.
  const std::string& client_address() const noexcept { return client_; }
  /// The id every answer to the current request carries (X-Request-Id): the client's own when it
  /// sent a usable one, else one made for it.
  const std::string& request_id() const noexcept { return exchange_.request_id; }
  /// The answer pending now (null when none): a shutdown cancels it.
  pending_answer* pending() const noexcept { return answer_.get(); }

private:
  /// Where the connection is in its life.
  enum class phase {
    reading,   ///< waiting for (the rest of) a request
    answering, ///< a request was handed up; its answer is being made or written
    refusing,  ///< answering a request that could not be read; the client's input is dropped
    lingering, ///< the last answer is written: reading and dropping input until the client closes
    closed,
  };
  /// The current request's answer.
  struct exchange {
    bool keep_alive = true; ///< another request may follow on this connection
    bool chunked = true;    ///< the client reads chunked bodies (HTTP/1.1)
    bool head_only = false; ///< a HEAD request: the head of the answer without its body
    bool streaming = false; ///< a streamed answer has begun
    bool complete = false;  ///< the whole answer is queued
    std::string request_id; ///< X-Request-Id of the answer: the client's, or one made here
  };
  /// What the one timer is waiting for.
  enum class wait_for { nothing, next_request, rest_of_request, client_close };

  void read();
  void process();
  void refuse(int status, std::string why);
  void finish_answer();
  void write(std::string data);
  void flush();
  void written();
  void linger();
  void arm(wait_for what, double seconds);
  std::string body_piece(std::string_view data) const;
  static std::size_t input_cap(const request_limits& lim);

  asio::ip::tcp::socket sock_;
  request_parser parser_;
  connection_timeouts timeouts_;
  connection_hooks hooks_;
  asio::steady_timer timer_, write_timer_;
  phase phase_ = phase::reading;
  exchange exchange_;
  wait_for waiting_ = wait_for::nothing;
  bool closing_down_ = false;
  std::shared_ptr<pending_answer> answer_;
  std::string client_;
  std::array<char, 16384> buf_{};
  std::string input_;
  std::size_t max_input_;
  std::deque<std::string> out_;
  bool writing_ = false;
  // Waits already queued to fire belong to an earlier request or write when these moved on.
  std::uint64_t request_epoch_ = 0, write_epoch_ = 0;
};

} // namespace aeg::server
