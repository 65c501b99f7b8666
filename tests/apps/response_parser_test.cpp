// The clients' response parser: bodies framed by length, chunks or the connection's end, fed
// in pieces of every size; interim answers; keep-alive; and every framing that could be read
// two ways refused. And the clients' URLs.
#include "apps/server/client.hpp"
#include "apps/server/http.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace aeg::server {
namespace {

struct parsed {
  std::vector<int> statuses;
  std::vector<std::string> bodies;
  int completed = 0;
  std::string error;
  bool keep_alive = true;
};

// Feeds `wire` in pieces of `piece` bytes (then the connection's end when `close`).
parsed parse(const std::string& wire, std::size_t piece, bool close = false) {
  parsed out;
  response_parser p({.on_headers =
                         [&](int s, const header_list&) {
                           out.statuses.push_back(s);
                           out.bodies.emplace_back();
                         },
                     .on_body = [&](std::string_view d) { out.bodies.back() += d; },
                     .on_complete = [&] { ++out.completed; }});
  for (std::size_t i = 0; i < wire.size() && out.error.empty(); i += piece)
    out.error = p.feed(std::string_view(wire).substr(i, piece));
  if (close && out.error.empty())
    out.error = p.finish();
  out.keep_alive = p.keep_alive();
  return out;
}

TEST(ResponseParser, BodiesByLengthChunksAndTheEndInPiecesOfEverySize) {
  const std::string wire =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
      "HTTP/1.1 204 No Content\r\n\r\n"
      "HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3;ext=\"q\"\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n";
  for (std::size_t piece : {1u, 2u, 3u, 7u, 64u, 4096u}) {
    const auto got = parse(wire, piece, true);
    EXPECT_EQ(got.error, "") << piece;
    EXPECT_EQ(got.statuses, (std::vector<int>{200, 204, 429, 200})) << piece;
    EXPECT_EQ(got.bodies,
              (std::vector<std::string>{"hello", "", "abcde", "data: 1\n\ndata: 2\n\n"}))
        << piece;
    EXPECT_EQ(got.completed, 4) << piece;
    EXPECT_FALSE(got.keep_alive) << piece; // the last one ran until the connection closed
  }
}

TEST(ResponseParser, KeepAliveFollowsTheVersionAndConnection) {
  EXPECT_TRUE(parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 100).keep_alive);
  EXPECT_FALSE(
      parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 100).keep_alive);
  EXPECT_FALSE(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 100).keep_alive);
  EXPECT_TRUE(parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", 100)
                  .keep_alive);
}

TEST(ResponseParser, AmbiguousOrBrokenFramingIsAnError) {
  const std::string ok = "HTTP/1.1 200 OK\r\n";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {ok + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
       "both Content-Length and Transfer-Encoding"},
      {ok + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "more than once"},
      {ok + "Content-Length: 3x\r\n\r\nabc", "Content-Length '3x'"},
      {ok + "Transfer-Encoding: gzip\r\n\r\n", "'gzip' is not supported"},
      {"HTTP/2 200 OK\r\n\r\n", "is not 'HTTP/1.1 CODE REASON'"},
      {"HTTP/1.1 20 OK\r\n\r\n", "is not 'HTTP/1.1 CODE REASON'"},
      {ok + "Content-Length: 0\n\r\n", "bare LF"},
      {ok + "Bad Name: x\r\n\r\n", "is malformed"},
      {ok + "Transfer-Encoding: chunked\r\n\r\n2\r\nabcdef\r\n0\r\n\r\n", "longer than its size"},
      {ok + "Transfer-Encoding: chunked\r\n\r\n3 4\r\nabc\r\n", "more than a size"},
      {ok + "X: " + std::string(70000, 'a') + "\r\n\r\n", "the head is over 65536 bytes"},
      {ok + "Connection: close\r\nContent-Length: 1\r\n\r\nab", "bytes after a response"},
  };
  for (const auto& [wire, says] : bad) {
    const auto got = parse(wire, 5);
    EXPECT_NE(got.error.find(says), std::string::npos) << wire.substr(0, 80) << " -> " << got.error;
  }
  // A connection that closes before the body's end cut the answer short.
  EXPECT_NE(parse(ok + "Content-Length: 9\r\n\r\nabc", 4, true).error.find("before the response"),
            std::string::npos);
  EXPECT_NE(parse(ok + "Content-Le", 4, true).error.find("in the middle of a response's head"),
            std::string::npos);
  EXPECT_EQ(parse("", 4, true).error, ""); // nothing at all is no error
}

TEST(Url, HostsPortsAndRefusals) {
  auto v6 = parse_url("http://[::1]:8125/v1");
  ASSERT_TRUE(v6.has_value()) << v6.error().message;
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, "8125");
  EXPECT_EQ(v6->base, "/v1");
  auto q = parse_url("HTTP://example.com?x=1");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->host, "example.com");
  EXPECT_EQ(q->base, "");
  for (const auto& [url, says] : std::vector<std::pair<std::string, std::string>>{
           {"http://h:0/", "the port '0'"},
           {"http://h:70000", "the port '70000'"},
           {"http://h:/", "the port ''"},
           {"http://user@h/", "user names"},
           {"http://[::1/", "lacks its ']'"},
           {"http://bad host/", "not a host name"},
           {"http:///path", "names no host"},
           {"ftp://h/", "only http://"},
           {"localhost:8000", "did you mean http://localhost:8000?"}}) {
    auto r = parse_url(url);
    ASSERT_FALSE(r.has_value()) << url;
    EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
  }
}

} // namespace
} // namespace aeg::server
