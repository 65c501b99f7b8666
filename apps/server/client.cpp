#include "apps/server/client.hpp"

#include <asio.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <optional>
#include <poll.h>

namespace aeg::server {

using asio::ip::tcp;

result<url_parts> parse_url(std::string_view url) {
  const auto text = std::string(url);
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    // "localhost:8000" is the usual slip: a host and port without the scheme.
    const bool bare = !url.empty() && url.find_first_of(" \t/") != 0 && url.rfind("http", 0) != 0;
    return fail(errc::invalid_argument, "'" + text + "' is not a URL" +
                                            (bare ? "; did you mean http://" + text + "?" : ""));
  }
  const auto scheme = lower(url.substr(0, scheme_end));
  if (scheme != "http")
    return fail(errc::invalid_argument,
                "'" + text + "': only http:// URLs are supported" +
                    (scheme == "https" ? " (put a TLS proxy in front for https)" : ""));
  auto rest = url.substr(scheme_end + 3);
  const auto authority = rest.substr(0, rest.find_first_of("/?#"));
  auto path = rest.substr(authority.size());
  path = path.substr(0, path.find_first_of("?#"));
  const auto bad = [&](const std::string& why) {
    return fail(errc::invalid_argument, "'" + text + "' is not a URL: " + why);
  };
  url_parts p;
  std::string_view port;
  bool has_port = false;
  if (authority.find('@') != std::string_view::npos)
    return bad("user names in URLs are not supported");
  if (!authority.empty() && authority.front() == '[') { // an IPv6 literal
    const auto close = authority.find(']');
    if (close == std::string_view::npos)
      return bad("an IPv6 address lacks its ']'");
    p.host = std::string(authority.substr(1, close - 1));
    const auto after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':')
      return bad("something follows the IPv6 address");
    has_port = !after.empty();
    port = has_port ? after.substr(1) : after;
    if (p.host.empty() || p.host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos)
      return bad("'" + p.host + "' is not an IPv6 address");
  } else {
    const auto colon = authority.find(':');
    p.host = std::string(authority.substr(0, colon));
    has_port = colon != std::string_view::npos;
    port = has_port ? authority.substr(colon + 1) : std::string_view();
    const bool name_ok = std::all_of(p.host.begin(), p.host.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
    });
    if (!name_ok)
      return bad("'" + p.host + "' is not a host name or address");
  }
  if (p.host.empty())
    return fail(errc::invalid_argument, "'" + text + "' names no host");
  if (has_port) {
    const bool digits = !port.empty() && port.size() <= 5 &&
                        port.find_first_not_of("0123456789") == std::string_view::npos;
    if (!digits || std::stoi(std::string(port)) < 1 || std::stoi(std::string(port)) > 65535)
      return bad("the port '" + std::string(port) + "' is not a number from 1 to 65535");
    p.port = std::string(port);
  }
  p.base = std::string(path);
  while (!p.base.empty() && p.base.back() == '/')
    p.base.pop_back();
  return p;
}

void sse_reader::feed(std::string_view bytes,
                      const std::function<void(const std::string&)>& on_data) {
  buffer_ += bytes;
  std::size_t start = 0;
  for (;;) {
    const auto nl = buffer_.find('\n', start);
    if (nl == std::string::npos)
      break;
    std::string_view line(buffer_.data() + start, nl - start);
    start = nl + 1;
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (line.empty()) { // the end of an event
      if (has_data_)
        on_data(data_);
      data_.clear();
      has_data_ = false;
      continue;
    }
    if (line.rfind("data:", 0) == 0) {
      line.remove_prefix(5);
      if (!line.empty() && line.front() == ' ')
        line.remove_prefix(1);
      if (has_data_)
        data_ += '\n';
      data_ += line;
      has_data_ = true;
    }
  }
  buffer_.erase(0, start);
}

struct http_client::impl {
  url_parts url;
  std::string api_key;
  asio::io_context io;
  tcp::socket sock{io};
  bool connected = false;

  result<void> connect() {
    asio::error_code ec;
    tcp::resolver resolver(io);
    auto endpoints = resolver.resolve(url.host, url.port, ec);
    if (ec)
      return fail(errc::unavailable, "cannot resolve " + url.host + ": " + ec.message());
    sock = tcp::socket(io);
    asio::connect(sock, endpoints, ec);
    if (ec)
      return fail(errc::unavailable, "cannot connect to " + url.host + ":" + url.port + ": " +
                                         ec.message() + " (is `aegaeon serve` running there?)");
    sock.set_option(tcp::no_delay(true), ec);
    connected = true;
    return {};
  }

  void disconnect() {
    asio::error_code ec;
    sock.close(ec);
    connected = false;
  }

  // Sends `req` and reads its response (see `request`). `retry` says that the connection
  // broke before any of the answer came: a kept-alive connection the server had closed.
  result<response> exchange(const std::string& req,
                            const std::function<void(std::string_view)>& on_body,
                            const std::function<bool()>& stop, bool& retry) {
    asio::error_code ec;
    asio::write(sock, asio::buffer(req), ec);
    response res;
    bool complete = false, got_any = false;
    response_parser parser({
        .on_headers =
            [&](int status, const header_list& h) {
              res.status = status;
              res.headers = h;
            },
        .on_body =
            [&](std::string_view d) {
              if (on_body)
                on_body(d);
              else
                res.body += d;
            },
        .on_complete = [&] { complete = true; },
    });
    // Closing the connection is how a client cancels (the server has no other signal).
    const auto stopped = [&] {
      disconnect();
      return fail(errc::cancelled, "stopped before the response ended");
    };
    std::array<char, 16384> buf{};
    while (!ec && !complete) {
      if (stop) {
        if (stop())
          return stopped();
        // Short waits, so that a stop is seen while the server is quiet.
        if (!readable(100, ec))
          continue;
      }
      const std::size_t n = sock.read_some(asio::buffer(buf), ec);
      if (n > 0) {
        got_any = true;
        if (auto err = parser.feed({buf.data(), n}); !err.empty()) {
          disconnect(); // what follows on it cannot be read either
          return fail(errc::corrupt_data, err);
        }
      }
    }
    if (!complete && ec == asio::error::eof && got_any) {
      // The end of the connection ends an answer only when its length was "until close";
      // otherwise the answer was cut short, which is an error, not a shorter answer.
      const auto err = parser.finish();
      if (!complete) {
        disconnect();
        return fail(errc::unavailable, "the server closed the connection mid-answer" +
                                           (err.empty() ? std::string() : ": " + err));
      }
    }
    if (complete) {
      if (!parser.keep_alive())
        disconnect();
      return res;
    }
    if (stop && stop()) // e.g. a signal that broke off the write
      return stopped();
    disconnect();
    retry = !got_any;
    return fail(errc::unavailable,
                "the connection to " + url.host + ":" + url.port + " broke: " + ec.message());
  }

  // Waits at most `ms` for the socket to have something to read (data, its end, or an error).
  // A signal ends the wait early; false then, as for a timeout.
  bool readable(int ms, asio::error_code& ec) {
    pollfd p{.fd = sock.native_handle(), .events = POLLIN, .revents = 0};
    const int n = ::poll(&p, 1, ms);
    if (n < 0 && errno != EINTR)
      ec = asio::error_code(errno, asio::system_category());
    return n > 0;
  }
};

http_client::http_client(url_parts url, std::string api_key) : impl_(std::make_unique<impl>()) {
  impl_->url = std::move(url);
  impl_->api_key = std::move(api_key);
}

http_client::~http_client() = default;

result<http_client::response>
http_client::request(const std::string& method, const std::string& path, const std::string& body,
                     const std::function<void(std::string_view)>& on_body,
                     const std::function<bool()>& stop) {
  auto& s = *impl_;
  std::string req = method + " " + s.url.base + path + " HTTP/1.1\r\nHost: " + s.url.host + ":" +
                    s.url.port + "\r\nAccept: */*\r\n";
  if (!s.api_key.empty())
    req += "Authorization: Bearer " + s.api_key + "\r\n";
  if (!body.empty() || method == "POST")
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;

  // A kept-alive connection the server has closed fails on first use: then connect again, once.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!s.connected)
      AEG_TRY(s.connect());
    bool retry = false;
    auto res = s.exchange(req, on_body, stop, retry);
    if (!retry || attempt == 1)
      return res;
  }
  return fail(errc::unavailable, "unreachable");
}

} // namespace aeg::server
