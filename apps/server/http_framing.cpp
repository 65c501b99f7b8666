#include "apps/server/http_framing.hpp"

#include "apps/server/http.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>

namespace aeg::server::framing {

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

namespace {

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

bool line_reader::take(std::string_view data, std::size_t& pos, std::string& out,
                       std::size_t& counted, std::size_t limit, const refusal& over,
                       std::optional<refusal>& refused) {
  const auto nl = data.find('\n', pos);
  const auto piece =
      data.substr(pos, nl == std::string_view::npos ? data.size() - pos : nl - pos + 1);
  pos += piece.size();
  line_ += piece;
  counted += piece.size();
  const auto refuse = [&](refusal r) {
    if (!refused)
      refused = std::move(r);
    return false;
  };
  if (counted > limit)
    return refuse(over);
  if (nl == std::string_view::npos)
    return false;
  if (line_.size() < 2 || line_[line_.size() - 2] != '\r')
    return refuse({400, fmt::format("malformed HTTP {}: a line ends in a bare LF (CRLF ends a "
                                    "line)",
                                    what_)});
  out.assign(line_, 0, line_.size() - 2);
  line_.clear();
  if (out.find('\r') != std::string::npos)
    return refuse({400, fmt::format("malformed HTTP {}: a bare CR inside a line", what_)});
  return true;
}

void body_reader::start(kind k, std::uint64_t length, limits l) {
  kind_ = k;
  limits_ = l;
  remaining_ = length;
  chunk_end_seen_ = trailer_bytes_ = size_line_bytes_ = 0;
  refused_.reset();
  st_ = k == kind::chunked                     ? state::chunk_size
        : k == kind::until_close || length > 0 ? state::data
                                               : state::complete;
}

void body_reader::feed(std::string_view data, std::size_t& pos, std::string& out) {
  while (!refused_ && st_ != state::complete && pos < data.size()) {
    switch (st_) {
    case state::data:
    case state::chunk_data: {
      const auto take =
          kind_ == kind::until_close
              ? data.size() - pos
              : static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, data.size() - pos));
      out.append(data.substr(pos, take));
      pos += take;
      if (kind_ == kind::until_close)
        break;
      remaining_ -= take;
      if (remaining_ == 0)
        st_ = st_ == state::data ? state::complete : state::chunk_end;
      break;
    }
    case state::chunk_size:
      chunk_header(data, pos, out);
      break;
    case state::chunk_end:
      chunk_end(data, pos);
      break;
    case state::trailers:
      trailers(data, pos);
      break;
    case state::complete:
      break;
    }
  }
}

bool body_reader::close() {
  if (kind_ == kind::until_close && st_ == state::data)
    st_ = state::complete;
  return st_ == state::complete;
}

void body_reader::chunk_header(std::string_view data, std::size_t& pos, const std::string& out) {
  std::string l;
  if (!lines_.take(data, pos, l, size_line_bytes_, 1024, {400, "a chunk size line is too long"},
                   refused_))
    return;
  size_line_bytes_ = 0;
  std::string why;
  const auto size = chunk_size(l, why);
  if (!size) {
    refused_ = refusal{400, "malformed chunked body: " + why};
    return;
  }
  if (*size >
      limits_.max_body_bytes - std::min<std::uint64_t>(limits_.max_body_bytes, out.size())) {
    refused_ =
        refusal{413, fmt::format("the body is over the limit of {} bytes", limits_.max_body_bytes)};
    return;
  }
  remaining_ = *size;
  st_ = *size == 0 ? state::trailers : state::chunk_data;
}

// A chunk's data ends exactly where its size says: the next two bytes are CRLF.
void body_reader::chunk_end(std::string_view data, std::size_t& pos) {
  while (pos < data.size() && chunk_end_seen_ < 2) {
    if (data[pos] != "\r\n"[chunk_end_seen_]) {
      refused_ = refusal{400, "malformed chunked body: a chunk's data is longer than its size "
                              "says"};
      return;
    }
    ++pos;
    ++chunk_end_seen_;
  }
  if (chunk_end_seen_ == 2) {
    chunk_end_seen_ = 0;
    st_ = state::chunk_size;
  }
}

void body_reader::trailers(std::string_view data, std::size_t& pos) {
  std::string l;
  const refusal over{431, fmt::format("the {}'s trailers are over the limit of {} bytes", what_,
                                      limits_.max_trailer_bytes)};
  while (!refused_ && st_ == state::trailers &&
         lines_.take(data, pos, l, trailer_bytes_, limits_.max_trailer_bytes, over, refused_)) {
    if (l.empty()) {
      st_ = state::complete;
    } else if (const auto colon = l.find(':'); colon == std::string::npos ||
                                               !is_token(std::string_view(l).substr(0, colon)) ||
                                               !std::all_of(l.begin(), l.end(), is_field_char)) {
      refused_ = refusal{400, "malformed chunked body: a malformed trailer field"};
    }
  }
}

} // namespace aeg::server::framing
