#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// HTTP/1.1 message parsing (strict framing of our own, http_framing.hpp) and formatting. Plain
// code with no I/O: the server and the clients feed it the bytes they read.

namespace aeg::server {

using header_list = std::vector<std::pair<std::string, std::string>>; ///< names in lower case

/// A complete request.
struct http_request {
  std::string method; ///< "GET", "POST", ...
  std::string target; ///< as sent: "/v1/models?x=1"
  std::string path;   ///< the target's path, percent-decoded, without its query or authority
  header_list headers;
  std::string body;
  bool keep_alive = true; ///< HTTP/1.1 default, or what Connection says
  bool chunked_ok = true; ///< false for HTTP/1.0: a body of unknown length must end with the close

  /// The value of header `name` (lower case), or null.
  const std::string* header(std::string_view name) const;
};

/// What a server accepts before refusing.
struct request_limits {
  std::size_t max_header_bytes = 16 * 1024; ///< request line and headers: 431 beyond
  std::size_t max_body_bytes = 1 << 20;     ///< 413 beyond
};

/// Incremental request parser; one request at a time (pipelined bytes wait for `take`).
class request_parser {
public:
  explicit request_parser(request_limits limits = {});
  ~request_parser();
  request_parser(const request_parser&) = delete;
  request_parser& operator=(const request_parser&) = delete;

  enum class status { need_more, complete, error };
  struct outcome {
    status state = status::need_more;
    std::size_t consumed = 0; ///< bytes of the input used; the rest belongs to a later call
    int http_status = 0;      ///< on error: 400, 411, 413, 415, 417, 431, 501 or 505
    std::string error;        ///< on error: what was wrong
    /// The head asked to be told to go on (`Expect: 100-continue`) and its body has not all
    /// arrived: answer "100 Continue" now. Set once per request.
    bool send_continue = false;
  };

  /// Feeds bytes. On `complete` the request is ready for `take`, and bytes after it were not
  /// consumed. On `error` the connection must answer `http_status` and close.
  outcome feed(std::string_view data);
  /// The request just completed; the parser then waits for the next one.
  http_request take();
  /// Whether some bytes of a request that is not complete yet have arrived.
  bool in_progress() const noexcept;
  /// Whether the current request's headers are complete (its body may still be coming).
  bool headers_complete() const noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Incremental response parser for clients; bodies arrive as they are decoded (chunked or not),
/// so a client can read server-sent events as they stream.
class response_parser {
public:
  struct callbacks {
    std::function<void(int status, const header_list& headers)> on_headers;
    std::function<void(std::string_view data)> on_body;
    std::function<void()> on_complete;
  };
  explicit response_parser(callbacks cb);
  ~response_parser();
  response_parser(const response_parser&) = delete;
  response_parser& operator=(const response_parser&) = delete;

  /// Feeds bytes; an empty string when they were fine, else what was wrong.
  std::string feed(std::string_view data);
  /// Tells the parser the connection closed (ends a body delimited by the close).
  std::string finish();
  /// Whether the server allows another request on this connection.
  bool keep_alive() const noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// "OK", "Not Found", ... for a status code.
std::string_view reason_phrase(int status) noexcept;

/// `s` with ASCII letters in lower case (header names, tokens and schemes compare so).
std::string lower(std::string_view s);

/// A whole response with Content-Length.
std::string format_response(int status, const header_list& headers, std::string_view body,
                            bool keep_alive);
/// The interim answer to `Expect: 100-continue`.
inline constexpr std::string_view continue_response = "HTTP/1.1 100 Continue\r\n\r\n";
/// The head of a chunked response (for server-sent events).
std::string format_chunked_head(int status, const header_list& headers, bool keep_alive);
/// The head of a response whose body ends when the connection closes (server-sent events to an
/// HTTP/1.0 client, which knows no chunks).
std::string format_close_delimited_head(int status, const header_list& headers);
/// One chunk of a chunked body; empty data gives nothing (the end is `last_chunk`).
std::string format_chunk(std::string_view data);
/// The end of a chunked body.
std::string_view last_chunk() noexcept;

} // namespace aeg::server
