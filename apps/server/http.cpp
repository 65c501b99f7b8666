#include "apps/server/http.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <http_parser.h>

namespace aeg::server {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Collects header fields and values, which http_parser may deliver in pieces.
struct header_collector {
  header_list headers;
  bool in_value = false;

  void field(std::string_view s) {
    if (in_value || headers.empty()) {
      headers.emplace_back();
      in_value = false;
    }
    headers.back().first += lower(s);
  }
  void value(std::string_view s) {
    if (headers.empty())
      headers.emplace_back();
    in_value = true;
    headers.back().second += s;
  }
};

} // namespace

const std::string* http_request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name)
      return &v;
  return nullptr;
}

// --- requests ---------------------------------------------------------------------------------

struct request_parser::impl {
  request_limits limits;
  http_parser parser{};
  http_parser_settings settings{};
  http_request current;
  header_collector headers;
  std::size_t header_bytes = 0;
  bool started = false, headers_done = false, complete = false;
  int refuse_status = 0; // set by a callback that stops the parser
  std::string refuse_why;

  explicit impl(request_limits l) : limits(l) {
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = this;
    http_parser_settings_init(&settings);
    settings.on_message_begin = [](http_parser* p) {
      auto& s = self(p);
      s.started = true;
      return 0;
    };
    settings.on_url = [](http_parser* p, const char* at, std::size_t n) {
      auto& s = self(p);
      s.current.target.append(at, n);
      return s.count_header(n);
    };
    settings.on_header_field = [](http_parser* p, const char* at, std::size_t n) {
      auto& s = self(p);
      s.headers.field({at, n});
      return s.count_header(n);
    };
    settings.on_header_value = [](http_parser* p, const char* at, std::size_t n) {
      auto& s = self(p);
      s.headers.value({at, n});
      return s.count_header(n);
    };
    settings.on_headers_complete = [](http_parser* p) {
      auto& s = self(p);
      s.headers_done = true;
      if (p->content_length != ULLONG_MAX && p->content_length > s.limits.max_body_bytes)
        return s.refuse(413, fmt::format("the body is {} bytes; the limit is {}", p->content_length,
                                         s.limits.max_body_bytes));
      return 0;
    };
    settings.on_body = [](http_parser* p, const char* at, std::size_t n) {
      auto& s = self(p);
      if (s.current.body.size() + n > s.limits.max_body_bytes)
        return s.refuse(
            413, fmt::format("the body is over the limit of {} bytes", s.limits.max_body_bytes));
      s.current.body.append(at, n);
      return 0;
    };
    settings.on_message_complete = [](http_parser* p) {
      auto& s = self(p);
      s.complete = true;
      s.current.method = http_method_str(static_cast<http_method>(p->method));
      s.current.keep_alive = http_should_keep_alive(p) != 0;
      s.current.chunked_ok = p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1);
      s.current.headers = std::move(s.headers.headers);
      const auto q = s.current.target.find('?');
      s.current.path = s.current.target.substr(0, q);
      http_parser_pause(p, 1); // one request at a time: pipelined bytes wait
      return 0;
    };
  }

  static impl& self(http_parser* p) { return *static_cast<impl*>(p->data); }

  int count_header(std::size_t n) {
    header_bytes += n;
    if (header_bytes > limits.max_header_bytes)
      return refuse(431, fmt::format("the request line and headers are over the limit of {} bytes",
                                     limits.max_header_bytes));
    return 0;
  }
  int refuse(int status, std::string why) {
    refuse_status = status;
    refuse_why = std::move(why);
    return -1;
  }
};

request_parser::request_parser(request_limits limits) : impl_(std::make_unique<impl>(limits)) {}
request_parser::~request_parser() = default;

request_parser::outcome request_parser::feed(std::string_view data) {
  auto& s = *impl_;
  if (s.complete)
    return {status::complete, 0, 0, {}};
  const std::size_t n = http_parser_execute(&s.parser, &s.settings, data.data(), data.size());
  const auto err = HTTP_PARSER_ERRNO(&s.parser);
  if (s.complete)
    return {status::complete, n, 0, {}};
  if (s.refuse_status != 0)
    return {status::error, n, s.refuse_status, s.refuse_why};
  if (err != HPE_OK)
    return {status::error, n, 400,
            std::string("malformed HTTP request: ") + http_errno_description(err)};
  // The parser's upgrade flag is only this message's once its headers are in (until then it may
  // still be the previous message's).
  if (s.headers_done && s.parser.upgrade != 0)
    return {status::error, n, 400, "protocol upgrades are not supported"};
  return {status::need_more, n, 0, {}};
}

http_request request_parser::take() {
  auto& s = *impl_;
  http_request r = std::move(s.current);
  s.current = {};
  s.headers = {};
  s.header_bytes = 0;
  s.started = s.headers_done = s.complete = false;
  http_parser_pause(&s.parser, 0);
  return r;
}

bool request_parser::in_progress() const noexcept {
  return impl_->started && !impl_->complete;
}

bool request_parser::headers_complete() const noexcept {
  return impl_->headers_done;
}

// --- responses --------------------------------------------------------------------------------

struct response_parser::impl {
  callbacks cb;
  http_parser parser{};
  http_parser_settings settings{};
  header_collector headers;

  explicit impl(callbacks c) : cb(std::move(c)) {
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = this;
    http_parser_settings_init(&settings);
    settings.on_header_field = [](http_parser* p, const char* at, std::size_t n) {
      self(p).headers.field({at, n});
      return 0;
    };
    settings.on_header_value = [](http_parser* p, const char* at, std::size_t n) {
      self(p).headers.value({at, n});
      return 0;
    };
    settings.on_headers_complete = [](http_parser* p) {
      auto& s = self(p);
      if (s.cb.on_headers)
        s.cb.on_headers(static_cast<int>(p->status_code), s.headers.headers);
      s.headers = {};
      return 0;
    };
    settings.on_body = [](http_parser* p, const char* at, std::size_t n) {
      auto& s = self(p);
      if (s.cb.on_body)
        s.cb.on_body({at, n});
      return 0;
    };
    settings.on_message_complete = [](http_parser* p) {
      auto& s = self(p);
      if (s.cb.on_complete)
        s.cb.on_complete();
      return 0;
    };
  }
  static impl& self(http_parser* p) { return *static_cast<impl*>(p->data); }
};

response_parser::response_parser(callbacks cb) : impl_(std::make_unique<impl>(std::move(cb))) {}
response_parser::~response_parser() = default;

std::string response_parser::feed(std::string_view data) {
  auto& s = *impl_;
  http_parser_execute(&s.parser, &s.settings, data.data(), data.size());
  const auto err = HTTP_PARSER_ERRNO(&s.parser);
  if (err != HPE_OK)
    return std::string("malformed HTTP response: ") + http_errno_description(err);
  return {};
}

std::string response_parser::finish() {
  return feed({});
}

bool response_parser::keep_alive() const noexcept {
  return http_should_keep_alive(&impl_->parser) != 0;
}

// --- formatting -------------------------------------------------------------------------------

std::string_view reason_phrase(int status) noexcept {
  return http_status_str(static_cast<http_status>(status));
}

namespace {

std::string head(int status, const header_list& headers, bool keep_alive) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", status, reason_phrase(status));
  for (const auto& [k, v] : headers)
    out += fmt::format("{}: {}\r\n", k, v);
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  return out;
}

} // namespace

std::string format_response(int status, const header_list& headers, std::string_view body,
                            bool keep_alive) {
  std::string out = head(status, headers, keep_alive);
  out += fmt::format("Content-Length: {}\r\n\r\n", body.size());
  out += body;
  return out;
}

std::string format_chunked_head(int status, const header_list& headers, bool keep_alive) {
  return head(status, headers, keep_alive) + "Transfer-Encoding: chunked\r\n\r\n";
}

std::string format_close_delimited_head(int status, const header_list& headers) {
  return head(status, headers, false) + "\r\n";
}

std::string format_chunk(std::string_view data) {
  if (data.empty())
    return {};
  return fmt::format("{:x}\r\n{}\r\n", data.size(), data);
}

std::string_view last_chunk() noexcept {
  return "0\r\n\r\n";
}

} // namespace aeg::server
