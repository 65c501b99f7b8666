#include "apps/server/http.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <http_parser.h>

namespace aeg::server {

namespace {

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

// The Date header's value (RFC 9110, 5.6.7): "Tue, 24 Nov 2026 03:00:00 GMT".
std::string http_date() {
  static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t now = std::time(nullptr);
  std::tm t{};
  gmtime_r(&now, &t);
  return fmt::format("{}, {:02} {} {} {:02}:{:02}:{:02} GMT", days[t.tm_wday], t.tm_mday,
                     months[t.tm_mon], t.tm_year + 1900, t.tm_hour, t.tm_min, t.tm_sec);
}

std::string head(int status, const header_list& headers, bool keep_alive) {
  std::string out =
      fmt::format("HTTP/1.1 {} {}\r\nDate: {}\r\n", status, reason_phrase(status), http_date());
  for (const auto& [k, v] : headers)
    out += fmt::format("{}: {}\r\n", k, v);
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  return out;
}

} // namespace

std::string format_response(int status, const header_list& headers, std::string_view body,
                            bool keep_alive) {
  std::string out = head(status, headers, keep_alive);
  // A 204 or 304 has no body and carries no Content-Length (RFC 9110, 8.6).
  if (status == 204 || status == 304)
    return out + "\r\n";
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

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

} // namespace aeg::server
