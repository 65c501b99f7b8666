// The server's HTTP/1.1 request parser: strict framing (RFC 9112), written for this server rather
// than taken from a lenient general parser, because a request a proxy in front could read
// otherwise (a chunk longer than its size, a bare LF, a size line with junk in it, two lengths)
// is how requests get smuggled. Every such framing is refused with 400, and the connection
// closes after the answer.

#include "apps/server/http.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>

namespace aeg::server {

namespace {

// RFC 9110, 5.6.2: the characters of a token.
bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// A field value's characters: visible, obs-text, space and tab (no CR, LF or other controls).
bool is_field_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
    v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
    v.remove_suffix(1);
  return v;
}

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

// Whether a comma-separated header (Connection) lists `token`, in any case.
bool lists(const std::string* value, std::string_view token) {
  if (value == nullptr)
    return false;
  std::string_view v(*value);
  while (!v.empty()) {
    const auto comma = v.find(',');
    if (lower(trim(v.substr(0, comma))) == token)
      return true;
    if (comma == std::string_view::npos)
      break;
    v.remove_prefix(comma + 1);
  }
  return false;
}

struct refusal {
  int status;
  std::string why;
};

// A chunk-size line (without its CRLF): 1*HEXDIG, then extensions ";" name ["=" value], with
// optional whitespace around the separators and nothing else. Its size, or why not.
std::optional<std::uint64_t> chunk_size(std::string_view line, std::string& why) {
  std::size_t i = 0;
  std::uint64_t size = 0;
  for (; i < line.size() && hex_digit(line[i]) >= 0; ++i) {
    if (i >= 15) {
      why = "a chunk size is too large";
      return std::nullopt;
    }
    size = size * 16 + static_cast<std::uint64_t>(hex_digit(line[i]));
  }
  if (i == 0) {
    why = "a chunk size is not a hexadecimal number";
    return std::nullopt;
  }
  auto skip_ws = [&] {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
      ++i;
  };
  auto token = [&] {
    const auto start = i;
    while (i < line.size() && is_tchar(line[i]))
      ++i;
    return i > start;
  };
  auto quoted = [&] {
    if (i >= line.size() || line[i] != '"')
      return false;
    for (++i; i < line.size(); ++i) {
      if (line[i] == '\\')
        ++i;
      else if (line[i] == '"')
        return ++i, true;
      else if (!is_field_char(line[i]))
        return false;
    }
    return false;
  };
  for (;;) {
    skip_ws();
    if (i == line.size())
      return size;
    if (line[i] != ';') {
      why = "a chunk size line holds more than a size and extensions";
      return std::nullopt;
    }
    ++i;
    skip_ws();
    if (!token()) {
      why = "a chunk extension has no name";
      return std::nullopt;
    }
    skip_ws();
    if (i < line.size() && line[i] == '=') {
      ++i;
      skip_ws();
      if (!token() && !quoted()) {
        why = "a chunk extension's value is malformed";
        return std::nullopt;
      }
    }
  }
}

} // namespace

const std::string* http_request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name)
      return &v;
  return nullptr;
}

struct request_parser::impl {
  enum class state { head, body, chunk_size, chunk_data, chunk_end, trailers, complete };

  request_limits limits;
  state st = state::head;
  http_request current;
  std::string line;           // a line (head, chunk size, trailer) not complete yet
  std::size_t head_bytes = 0; // every byte of the head (and of the trailers) so far
  bool saw_request_line = false;
  int minor = 1;
  std::uint64_t remaining = 0; // body or chunk bytes still to come
  std::size_t chunk_end_seen = 0;
  bool expect_continue = false, continue_told = false;
  std::optional<refusal> refused;

  explicit impl(request_limits l) : limits(l) {}

  void refuse(int status, std::string why) {
    if (!refused)
      refused = refusal{status, std::move(why)};
  }

  // Takes one line of `data` from `pos` (without its CRLF) into `out`, or the rest of `data`
  // into `line` when the line is not complete. `counted` lines count towards the head limit.
  bool take_line(std::string_view data, std::size_t& pos, std::string& out, bool counted,
                 std::size_t limit) {
    const auto nl = data.find('\n', pos);
    const auto piece =
        data.substr(pos, nl == std::string_view::npos ? data.size() - pos : nl - pos + 1);
    pos += piece.size();
    line += piece;
    if (counted)
      head_bytes += piece.size();
    if ((counted && head_bytes > limit) || (!counted && line.size() > limit)) {
      if (counted)
        refuse(431, fmt::format("the request line and headers are over the limit of {} bytes",
                                limits.max_header_bytes));
      else
        refuse(400, "a chunk size line is too long");
      return false;
    }
    if (nl == std::string_view::npos)
      return false;
    if (line.size() < 2 || line[line.size() - 2] != '\r') {
      refuse(400, "malformed HTTP request: a line ends in a bare LF (CRLF ends a line)");
      return false;
    }
    out.assign(line, 0, line.size() - 2);
    line.clear();
    if (out.find('\r') != std::string::npos) {
      refuse(400, "malformed HTTP request: a bare CR inside a line");
      return false;
    }
    return true;
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
    remaining = length.value_or(0);
    st = te ? state::chunk_size : remaining > 0 ? state::body : state::complete;
  }

  void head(std::string_view data, std::size_t& pos) {
    std::string l;
    while (!refused && st == state::head &&
           take_line(data, pos, l, true, limits.max_header_bytes)) {
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
    const auto take =
        static_cast<std::size_t>(std::min<std::uint64_t>(remaining, data.size() - pos));
    current.body.append(data.substr(pos, take));
    pos += take;
    remaining -= take;
    if (remaining == 0)
      st = st == state::body ? state::complete : state::chunk_end;
  }

  void chunk_header(std::string_view data, std::size_t& pos) {
    std::string l;
    if (!take_line(data, pos, l, false, 1024))
      return;
    std::string why;
    const auto size = chunk_size(l, why);
    if (!size)
      return refuse(400, "malformed chunked body: " + why);
    if (*size > limits.max_body_bytes - std::min(limits.max_body_bytes, current.body.size()))
      return refuse(413,
                    fmt::format("the body is over the limit of {} bytes", limits.max_body_bytes));
    remaining = *size;
    st = *size == 0 ? state::trailers : state::chunk_data;
  }

  // A chunk's data ends exactly where its size says: the next two bytes are CRLF.
  void chunk_end(std::string_view data, std::size_t& pos) {
    while (pos < data.size() && chunk_end_seen < 2) {
      if (data[pos] != "\r\n"[chunk_end_seen])
        return refuse(400, "malformed chunked body: a chunk's data is longer than its size "
                           "says");
      ++pos;
      ++chunk_end_seen;
    }
    if (chunk_end_seen == 2) {
      chunk_end_seen = 0;
      st = state::chunk_size;
    }
  }

  void trailers(std::string_view data, std::size_t& pos) {
    std::string l;
    while (!refused && st == state::trailers &&
           take_line(data, pos, l, true, limits.max_header_bytes)) {
      if (l.empty()) {
        st = state::complete;
      } else if (const auto colon = l.find(':'); colon == std::string::npos ||
                                                 !is_token(std::string_view(l).substr(0, colon)) ||
                                                 !std::all_of(l.begin(), l.end(), is_field_char)) {
        refuse(400, "malformed chunked body: a malformed trailer field");
      }
    }
  }
};

request_parser::request_parser(request_limits limits) : impl_(std::make_unique<impl>(limits)) {}
request_parser::~request_parser() = default;

request_parser::outcome request_parser::feed(std::string_view data) {
  auto& s = *impl_;
  std::size_t pos = 0;
  while (!s.refused && s.st != impl::state::complete && pos < data.size()) {
    switch (s.st) {
    case impl::state::head:
      s.head(data, pos);
      break;
    case impl::state::body:
    case impl::state::chunk_data:
      s.body(data, pos);
      break;
    case impl::state::chunk_size:
      s.chunk_header(data, pos);
      break;
    case impl::state::chunk_end:
      s.chunk_end(data, pos);
      break;
    case impl::state::trailers:
      s.trailers(data, pos);
      break;
    case impl::state::complete:
      break;
    }
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
  return (impl_->saw_request_line || !impl_->line.empty()) && impl_->st != impl::state::complete;
}

bool request_parser::headers_complete() const noexcept {
  return impl_->st != impl::state::head;
}

} // namespace aeg::server
