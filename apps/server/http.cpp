#include "apps/server/http.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <iterator>
#include <utility>

namespace aeg::server {

// --- formatting -------------------------------------------------------------------------------

std::string_view reason_phrase(int status) noexcept {
  // RFC 9110, 15: the codes this server and its clients meet.
  static constexpr std::pair<int, std::string_view> phrases[] = {
      {100, "Continue"},
      {101, "Switching Protocols"},
      {200, "OK"},
      {201, "Created"},
      {202, "Accepted"},
      {204, "No Content"},
      {206, "Partial Content"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {303, "See Other"},
      {304, "Not Modified"},
      {307, "Temporary Redirect"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {406, "Not Acceptable"},
      {408, "Request Timeout"},
      {409, "Conflict"},
      {411, "Length Required"},
      {413, "Content Too Large"},
      {414, "URI Too Long"},
      {415, "Unsupported Media Type"},
      {417, "Expectation Failed"},
      {421, "Misdirected Request"},
      {422, "Unprocessable Content"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {505, "HTTP Version Not Supported"}};
  const auto* p = std::find_if(std::begin(phrases), std::end(phrases),
                               [&](const auto& e) { return e.first == status; });
  return p == std::end(phrases) ? std::string_view("Unknown") : p->second;
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
