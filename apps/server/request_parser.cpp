// The server's HTTP/1.1 request parser: strict framing (RFC 9112), written for this server rather
// than taken from a lenient general parser, because a request a proxy in front could read
// otherwise (a chunk longer than its size, a bare LF, a size line with junk in it, two lengths)
// is how requests get smuggled. Every such framing is refused with 400, and the connection
// closes after the answer.

#include "apps/server/http.hpp"
#include "apps/server/http_framing.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>

namespace aeg::server {

namespace {

using namespace framing;

// The path of a request target: origin-form ("/v1/models?x") or absolute-form
// ("http://host/v1/models"), percent-decoded. Nothing when it is malformed.
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
  for (const auto& [k, v] : headers)
    if (k == name)
      return &v;
  return nullptr;
}

struct request_parser::impl {
  enum class state { head, body, complete };

  request_limits limits;
  state st = state::head;
  http_request current;
  line_reader lines{"request"};
  body_reader body_in{"request"};
  std::size_t head_bytes = 0; // every byte of the head so far
  bool saw_request_line = false;
  int minor = 1;
  bool expect_continue = false, continue_told = false;
  std::optional<refusal> refused;

  explicit impl(request_limits l) : limits(l) {}

  void refuse(int status, std::string why) {
    if (!refused)
      refused = refusal{status, std::move(why)};
  }

  void request_line(std::string_view l) {
    const auto sp1 = l.find(' ');
    const auto sp2 = sp1 == std::string_view::npos ? sp1 : l.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || l.find(' ', sp2 + 1) != std::string_view::npos)
      return refuse(400, "malformed HTTP request: the request line is not 'METHOD TARGET "
                         "HTTP/1.1'");
    const auto method = l.substr(0, sp1), target = l.substr(sp1 + 1, sp2 - sp1 - 1),
               version = l.substr(sp2 + 1);
    if (!is_token(method) || target.empty() ||
        std::any_of(target.begin(), target.end(),
                    [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; }))
      return refuse(400, "malformed HTTP request: a bad method or request target");
    // origin-form ("/path"), absolute-form ("http://host/path"), or "*" for OPTIONS.
    const auto scheme = lower(target.substr(0, 8));
    if (target.front() != '/' && scheme.rfind("http://", 0) != 0 && scheme != "https://" &&
        !(target == "*" && method == "OPTIONS"))
      return refuse(400, "malformed HTTP request: the request target must be a path ('/...') or "
                         "an absolute URL");
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !std::isdigit(version[5]) ||
        version[6] != '.' || !std::isdigit(version[7]))
      return refuse(400, "malformed HTTP request: a bad HTTP version");
    if (version[5] != '1')
      return refuse(505, fmt::format("{} is not supported; use HTTP/1.1", version));
    minor = version[7] - '0';
    current.method = std::string(method);
    current.target = std::string(target);
    saw_request_line = true;
  }

  void header_line(std::string_view l) {
    if (l.front() == ' ' || l.front() == '\t') { // obs-fold: one line, the fold a space
      if (current.headers.empty())
        return refuse(400, "malformed HTTP request: the first header line is folded");
      if (!std::all_of(l.begin(), l.end(), is_field_char))
        return refuse(400, "malformed HTTP request: a control character in a header value");
      auto& value = current.headers.back().second;
      value += (value.empty() ? "" : " ") + std::string(trim(l));
      return;
    }
    const auto colon = l.find(':');
    // A field name is a token with nothing between it and the colon (RFC 9112, 5.1).
    if (colon == std::string_view::npos || !is_token(l.substr(0, colon)))
      return refuse(400, fmt::format("header field name '{}' is malformed (a token, with no "
                                     "whitespace before the colon)",
                                     l.substr(0, std::min(colon, std::size_t{64}))));
    const auto value = l.substr(colon + 1);
    if (!std::all_of(value.begin(), value.end(), is_field_char))
      return refuse(400, "malformed HTTP request: a control character in a header value");
    current.headers.emplace_back(lower(l.substr(0, colon)), std::string(trim(value)));
  }

  // What the head asks that this server will not do, or would read otherwise than a proxy in
  // front might, refused before the body; else how the body comes.
  void end_of_head() {
    const auto& h = current.headers;
    for (const char* once :
         {"host", "authorization", "content-type", "content-length", "transfer-encoding"})
      if (std::count_if(h.begin(), h.end(), [&](const auto& kv) { return kv.first == once; }) > 1)
        return refuse(400, fmt::format("header '{}' is given more than once", once));
    const auto* te = current.header("transfer-encoding");
    const auto* cl = current.header("content-length");
    if (te && lower(*te) != "chunked")
      return refuse(501, fmt::format("Transfer-Encoding '{}' is not supported; send the body "
                                     "as is or chunked",
                                     *te));
    if (te && cl)
      return refuse(400, "a request with both Content-Length and Transfer-Encoding is ambiguous; "
                         "send one");
    if (const auto* ce = current.header("content-encoding"); ce && lower(*ce) != "identity")
      return refuse(415, fmt::format("Content-Encoding '{}' is not supported; send the body "
                                     "uncompressed",
                                     *ce));
    if (minor >= 1 && current.header("host") == nullptr)
      return refuse(400, "an HTTP/1.1 request needs a Host header");
    if (const auto* ex = current.header("expect")) {
      if (lower(*ex) != "100-continue")
        return refuse(417, fmt::format("Expect '{}' is not supported", *ex));
      expect_continue = minor >= 1; // an HTTP/1.0 client gets no interim answer
    }
    std::optional<std::uint64_t> length;
    if (cl) {
      if (cl->empty() || cl->size() > 18 ||
          !std::all_of(cl->begin(), cl->end(), [](char c) { return std::isdigit(c) != 0; }))
        return refuse(400, fmt::format("Content-Length '{}' is not a number of bytes", *cl));
      length = std::stoull(*cl);
      if (*length > limits.max_body_bytes)
        return refuse(413, fmt::format("the body is {} bytes; the limit is {}", *length,
                                       limits.max_body_bytes));
    }
    const bool bodied =
        current.method == "POST" || current.method == "PUT" || current.method == "PATCH";
    if (bodied && !te && !cl)
      return refuse(411, "a request with a body needs a Content-Length (or a chunked body)");
    if (auto path = target_path(current.target))
      current.path = std::move(*path);
    else
      return refuse(400, "the request target has a malformed percent-escape");
    current.chunked_ok = minor >= 1;
    current.keep_alive = minor >= 1 ? !lists(current.header("connection"), "close")
                                    : lists(current.header("connection"), "keep-alive");
    // Trailers count towards the head's limit, as its bytes do.
    body_in.start(te ? body_reader::kind::chunked : body_reader::kind::length, length.value_or(0),
                  {limits.max_body_bytes, limits.max_header_bytes - head_bytes});
    st = body_in.complete() ? state::complete : state::body;
  }

  void head(std::string_view data, std::size_t& pos) {
    std::string l;
    const refusal over{431, fmt::format("the request line and headers are over the limit of {} "
                                        "bytes",
                                        limits.max_header_bytes)};
    while (!refused && st == state::head &&
           lines.take(data, pos, l, head_bytes, limits.max_header_bytes, over, refused)) {
      if (!saw_request_line) {
        if (l.empty()) { // empty lines before a request are tolerated (RFC 9112, 2.2)
          head_bytes = 0;
          continue;
        }
        request_line(l);
      } else if (l.empty()) {
        end_of_head();
      } else {
        header_line(l);
      }
    }
  }

  void body(std::string_view data, std::size_t& pos) {
    body_in.feed(data, pos, current.body);
    if (const auto& r = body_in.refused(); r && r->status == 431) // trailers share the head's
      refuse(431, fmt::format("the request line, headers and trailers are over the limit of {} "
                              "bytes",
                              limits.max_header_bytes));
    else if (r)
      refuse(r->status, r->why);
    else if (body_in.complete())
      st = state::complete;
  }
};

request_parser::request_parser(request_limits limits) : impl_(std::make_unique<impl>(limits)) {}
request_parser::~request_parser() = default;

request_parser::outcome request_parser::feed(std::string_view data) {
  auto& s = *impl_;
  std::size_t pos = 0;
  while (!s.refused && s.st != impl::state::complete && pos < data.size()) {
    if (s.st == impl::state::head)
      s.head(data, pos);
    else
      s.body(data, pos);
  }
  if (s.refused)
    return {status::error, pos, s.refused->status, s.refused->why};
  if (s.st == impl::state::complete)
    return {status::complete, pos, 0, {}};
  outcome o{status::need_more, pos, 0, {}};
  if (headers_complete() && s.expect_continue && !s.continue_told)
    o.send_continue = s.continue_told = true;
  return o;
}

http_request request_parser::take() {
  auto& s = *impl_;
  http_request r = std::move(s.current);
  const auto limits = s.limits;
  s = impl(limits);
  return r;
}

bool request_parser::in_progress() const noexcept {
  return (impl_->saw_request_line || impl_->lines.pending()) && impl_->st != impl::state::complete;
}

bool request_parser::headers_complete() const noexcept {
  return impl_->st != impl::state::head;
}

} // namespace aeg::server
