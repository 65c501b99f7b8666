#pragma once

#include "apps/server/http.hpp"
#include "coro/error.hpp"

#include <functional>
#include <memory>
#include <string>
#include <string_view>

// Clients of the server: a small blocking HTTP/1.1 client for terminal tools (`aegaeon chat
// --url`), and a reader of server-sent events. The load generator uses the same parsers
// asynchronously (apps/aegaeon/bench_url.cpp).

namespace aeg::server {

/// The parts of an "http://host:port/base" URL.
struct url_parts {
  std::string host;
  std::string port = "80";
  std::string base; ///< path prefix without a trailing slash ("" or "/api")
};

/// Parses an http:// URL; https and other schemes are errors that say so.
result<url_parts> parse_url(std::string_view url);

/// Splits an event stream into the payloads of its "data:" lines.
class sse_reader {
public:
  /// Feeds body bytes; calls `on_data` with each event's data (lines joined by "\n").
  void feed(std::string_view bytes, const std::function<void(const std::string&)>& on_data);

private:
  std::string buffer_;
  std::string data_;
  bool has_data_ = false;
};

/// One connection to a server, kept alive across requests, used from one thread. Blocking: for
/// terminal clients and tests, never inside the server.
class http_client {
public:
  http_client(url_parts url, std::string api_key = {});
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  struct response {
    int status = 0;
    header_list headers;
    std::string body; ///< empty when the body went to `on_body`
  };

  /// Sends a request (JSON body when not empty) and reads the response; with `on_body` the body
  /// is handed over as it arrives instead of collected. Reconnects when the server closed the
  /// connection in between.
  ///
  /// `stop`, when given, is asked after each piece of the response and while waiting for one
  /// (at least every 100 ms, and when a signal interrupts the wait). Once it answers true the
  /// connection is closed, which makes our server cancel the request and free what it held,
  /// and the result is errc::cancelled.
  result<response> request(const std::string& method, const std::string& path,
                           const std::string& body = {},
                           const std::function<void(std::string_view)>& on_body = {},
                           const std::function<bool()>& stop = {});

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace aeg::server
