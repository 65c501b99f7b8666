#include "apps/server/http.hpp"

#include <climits>
#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <ctime>
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

// Header values without the optional whitespace after them (the parser drops it before).
void trim_values(header_list& headers) {
  for (auto& [k, v] : headers)
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
      v.pop_back();
}

const std::string* find(const header_list& headers, std::string_view name) {
  for (const auto& [k, v] : headers)
    if (k == name)
      return &v;
  return nullptr;
}

// RFC 9110, 5.6.2: the characters of a token.
bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// The path of a request target: origin-form ("/v1/models?x") or absolute-form
// ("http://host/v1/models"), percent-decoded. Empty when it is malformed.
std::optional<std::string> target_path(std::string_view target) {
  for (std::string_view scheme : {"http://", "https://"})
    if (target.size() > scheme.size() && lower(target.substr(0, scheme.size())) == scheme) {
      const auto slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  target = target.substr(0, target.find('?'));
  std::string path;
  for (std::size_t i = 0; i < target.size(); ++i) {
    if (target[i] != '%') {
      path += target[i];
      continue;
    }
    const int hi = i + 2 < target.size() ? hex_digit(target[i + 1]) : -1;
    const int lo = hi >= 0 ? hex_digit(target[i + 2]) : -1;
    if (lo < 0 || (hi == 0 && lo == 0))
      return std::nullopt; // a bad escape, or a NUL
    path += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return path;
}

} // namespace

const std::string* http_request::header(std::string_view name) const {
  return find(headers, name);
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
  bool expect_continue = false, continue_told = false;
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
      trim_values(s.headers.headers);
      return s.check_head(p);
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
      auto path = target_path(s.current.target);
      if (!path)
        return s.refuse(400, "the request target has a malformed percent-escape");
      s.current.path = std::move(*path);
      s.complete = true;
      s.current.method = http_method_str(static_cast<http_method>(p->method));
      s.current.keep_alive = http_should_keep_alive(p) != 0;
      s.current.chunked_ok = p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1);
      s.current.headers = std::move(s.headers.headers);
      http_parser_pause(p, 1); // one request at a time: pipelined bytes wait
      return 0;
    };
  }

  // What the head of a request asks that this server will not do, refused before its body.
  int check_head(http_parser* p) {
    if (p->http_major != 1)
      return refuse(505, fmt::format("HTTP/{}.{} is not supported; use HTTP/1.1", p->http_major,
                                     p->http_minor));
    const auto& h = headers.headers;
    // Lenient parsing is how requests get smuggled past a proxy that reads them otherwise
    // (RFC 9112, 5.1 and 3.2): a field name is a token, nothing between it and the colon; a
    // field that says one thing comes once; HTTP/1.1 names its Host.
    for (const auto& [name, value] : h)
      if (name.empty() || !std::all_of(name.begin(), name.end(), is_tchar))
        return refuse(400, fmt::format("header field name '{}' is malformed (a token, with no "
                                       "whitespace before the colon)",
                                       name));
    for (const char* once : {"host", "authorization", "content-type", "transfer-encoding"})
      if (std::count_if(h.begin(), h.end(), [&](const auto& kv) { return kv.first == once; }) > 1)
        return refuse(400, fmt::format("header '{}' is given more than once", once));
    if (const auto* te = find(h, "transfer-encoding"); te && lower(*te) != "chunked")
      return refuse(501, fmt::format("Transfer-Encoding '{}' is not supported; send the body "
                                     "as is or chunked",
                                     *te));
    if (const auto* ce = find(h, "content-encoding"); ce && lower(*ce) != "identity")
      return refuse(415, fmt::format("Content-Encoding '{}' is not supported; send the body "
                                     "uncompressed",
                                     *ce));
    const bool chunked = (p->flags & F_CHUNKED) != 0;
    const auto method = static_cast<http_method>(p->method);
    if ((method == HTTP_POST || method == HTTP_PUT || method == HTTP_PATCH) && !chunked &&
        p->content_length == ULLONG_MAX)
      return refuse(411, "a request with a body needs a Content-Length (or a chunked body)");
    if (p->content_length != ULLONG_MAX && p->content_length > limits.max_body_bytes)
      return refuse(413, fmt::format("the body is {} bytes; the limit is {}", p->content_length,
                                     limits.max_body_bytes));
    if (const auto* ex = find(h, "expect")) {
      if (lower(*ex) != "100-continue")
        return refuse(417, fmt::format("Expect '{}' is not supported", *ex));
      // An HTTP/1.0 client gets no interim answer (RFC 9110, 10.1.1).
      expect_continue = p->http_minor >= 1;
    }
    if (p->http_minor >= 1 && find(h, "host") == nullptr)
      return refuse(400, "an HTTP/1.1 request needs a Host header");
    return 0;
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
  outcome o{status::need_more, n, 0, {}};
  if (s.headers_done && s.expect_continue && !s.continue_told)
    o.send_continue = s.continue_told = true;
  return o;
}

http_request request_parser::take() {
  auto& s = *impl_;
  http_request r = std::move(s.current);
  s.current = {};
  s.headers = {};
  s.header_bytes = 0;
  s.started = s.headers_done = s.complete = false;
  s.expect_continue = s.continue_told = false;
  // Only a paused parser goes on (one in an error state stays there, and http_parser asserts).
  if (HTTP_PARSER_ERRNO(&s.parser) == HPE_PAUSED)
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

} // namespace aeg::server
