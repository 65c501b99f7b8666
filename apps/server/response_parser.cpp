// The clients' HTTP/1.1 response parser (`chat --url`, `bench --url`), on the same strict
// framing as the server's request parser: a response whose length could be read two ways is an
// error, not a guess. Bodies are handed on as they are decoded, so server-sent events stream.

#include "apps/server/http.hpp"
#include "apps/server/http_framing.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>

namespace aeg::server {

using namespace framing;

struct response_parser::impl {
  enum class state { head, body, done };

  static constexpr std::size_t max_head_bytes = 64 * 1024;

  callbacks cb;
  state st = state::head;
  line_reader lines{"response"};
  body_reader body_in{"response"};
  std::size_t head_bytes = 0;
  int status = 0, minor = 1;
  header_list headers;
  bool keep_alive = true;
  std::optional<refusal> refused;

  explicit impl(callbacks c) : cb(std::move(c)) {}

  void refuse(std::string why) {
    if (!refused)
      refused = refusal{0, std::move(why)};
  }

  void status_line(std::string_view l) {
    // "HTTP/1.1 200 OK": a version, a three-digit code and a reason that may be empty.
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    const bool ok = l.size() >= 12 && l.substr(0, 7) == "HTTP/1." && digit(l[7]) && l[8] == ' ' &&
                    std::all_of(l.begin() + 9, l.begin() + 12, digit) &&
                    (l.size() == 12 || l[12] == ' ');
    if (!ok)
      return refuse(fmt::format("malformed HTTP response: the status line '{}' is not "
                                "'HTTP/1.1 CODE REASON'",
                                l.substr(0, 64)));
    minor = l[7] - '0';
    status = std::stoi(std::string(l.substr(9, 3)));
  }

  void header_line(std::string_view l) {
    const auto colon = l.find(':');
    if (colon == std::string_view::npos || !is_token(l.substr(0, colon)) ||
        !std::all_of(l.begin() + static_cast<std::ptrdiff_t>(colon), l.end(), is_field_char))
      return refuse(fmt::format("malformed HTTP response: the header line '{}' is malformed",
                                l.substr(0, 64)));
    headers.emplace_back(lower(l.substr(0, colon)), std::string(trim(l.substr(colon + 1))));
  }

  const std::string* header(std::string_view name) const {
    const std::string* found = nullptr;
    for (const auto& [k, v] : headers)
      if (k == name)
        found = &v;
    return found;
  }

  // How the body is framed (RFC 9112, 6.3), refusing what could be read two ways.
  void end_of_head() {
    for (const char* once : {"content-length", "transfer-encoding"})
      if (std::count_if(headers.begin(), headers.end(),
                        [&](const auto& kv) { return kv.first == once; }) > 1)
        return refuse(
            fmt::format("malformed HTTP response: header '{}' is given more than once", once));
    const auto* te = header("transfer-encoding");
    const auto* cl = header("content-length");
    if (te && cl)
      return refuse("malformed HTTP response: both Content-Length and Transfer-Encoding");
    if (te && lower(*te) != "chunked")
      return refuse(fmt::format("HTTP response: Transfer-Encoding '{}' is not supported", *te));
    std::uint64_t length = 0;
    if (cl) {
      if (cl->empty() || cl->size() > 18 ||
          !std::all_of(cl->begin(), cl->end(), [](char c) { return std::isdigit(c) != 0; }))
        return refuse(fmt::format("malformed HTTP response: Content-Length '{}'", *cl));
      length = std::stoull(*cl);
    }
    if (status >= 100 && status < 200) { // an interim answer: the real one follows
      reset_head();
      return;
    }
    keep_alive = minor >= 1 ? !lists(header("connection"), "close")
                            : lists(header("connection"), "keep-alive");
    const bool bodiless = status == 204 || status == 304;
    const auto kind = bodiless || cl ? body_reader::kind::length
                      : te           ? body_reader::kind::chunked
                                     : body_reader::kind::until_close;
    if (kind == body_reader::kind::until_close)
      keep_alive = false;
    body_in.start(kind, bodiless ? 0 : length, {UINT64_MAX, max_head_bytes});
    if (cb.on_headers)
      cb.on_headers(status, headers);
    st = state::body;
  }

  void reset_head() {
    headers.clear();
    head_bytes = 0;
    status = 0;
    st = state::head;
  }

  void head(std::string_view data, std::size_t& pos) {
    std::string l;
    const refusal over{
        0, fmt::format("malformed HTTP response: the head is over {} bytes", max_head_bytes)};
    while (!refused && st == state::head &&
           lines.take(data, pos, l, head_bytes, max_head_bytes, over, refused)) {
      if (status == 0)
        status_line(l);
      else if (l.empty())
        end_of_head();
      else
        header_line(l);
    }
  }

  void body(std::string_view data, std::size_t& pos) {
    std::string out;
    body_in.feed(data, pos, out);
    if (!out.empty() && cb.on_body)
      cb.on_body(out);
    if (body_in.refused())
      refuse("malformed HTTP response: " + body_in.refused()->why);
    else if (body_in.complete())
      complete();
  }

  void complete() {
    if (cb.on_complete)
      cb.on_complete();
    // A kept-alive connection may carry the next response.
    reset_head();
    st = keep_alive ? state::head : state::done;
  }
};

response_parser::response_parser(callbacks cb) : impl_(std::make_unique<impl>(std::move(cb))) {}
response_parser::~response_parser() = default;

std::string response_parser::feed(std::string_view data) {
  auto& s = *impl_;
  std::size_t pos = 0;
  while (!s.refused && pos < data.size()) {
    if (s.st == impl::state::head)
      s.head(data, pos);
    else if (s.st == impl::state::body)
      s.body(data, pos);
    else
      s.refuse("malformed HTTP response: bytes after a response that closes the connection");
  }
  return s.refused ? s.refused->why : std::string();
}

std::string response_parser::finish() {
  auto& s = *impl_;
  if (s.refused)
    return s.refused->why;
  if (s.st == impl::state::body) {
    if (!s.body_in.close())
      return "the connection closed before the response's body ended";
    s.complete();
  } else if (s.st == impl::state::head && (s.status != 0 || s.lines.pending())) {
    return "the connection closed in the middle of a response's head";
  }
  return {};
}

bool response_parser::keep_alive() const noexcept {
  return impl_->keep_alive;
}

} // namespace aeg::server
