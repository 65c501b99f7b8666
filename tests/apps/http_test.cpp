// HTTP parsing and formatting, SSE reading and URL parsing: what the server and its clients rely
// on before any socket is involved.

#include "apps/server/client.hpp"
#include "apps/server/http.hpp"

#include <gtest/gtest.h>

#include <tuple>

namespace aeg::server {
namespace {

TEST(RequestParser, ParsesARequestFedByteByByte) {
  const std::string text = "POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: "
                           "application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
  request_parser p;
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto o = p.feed(std::string_view(text).substr(i, 1));
    ASSERT_NE(o.state, request_parser::status::error) << o.error;
    EXPECT_EQ(o.consumed, 1u);
    if (i + 1 < text.size())
      EXPECT_EQ(o.state, request_parser::status::need_more);
    else
      EXPECT_EQ(o.state, request_parser::status::complete);
  }
  auto r = p.take();
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/v1/completions?x=1");
  EXPECT_EQ(r.path, "/v1/completions");
  EXPECT_EQ(r.body, "{\"a\":1}");
  ASSERT_NE(r.header("content-type"), nullptr);
  EXPECT_EQ(*r.header("content-type"), "application/json");
  EXPECT_TRUE(r.keep_alive);
}

TEST(RequestParser, PipelinedRequestsComeOneAtATime) {
  const std::string two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n"
                          "Connection: close\r\n\r\n";
  request_parser p;
  auto o = p.feed(two);
  ASSERT_EQ(o.state, request_parser::status::complete);
  EXPECT_LT(o.consumed, two.size());
  EXPECT_EQ(p.take().path, "/a");
  auto o2 = p.feed(std::string_view(two).substr(o.consumed));
  ASSERT_EQ(o2.state, request_parser::status::complete);
  auto b = p.take();
  EXPECT_EQ(b.path, "/b");
  EXPECT_FALSE(b.keep_alive);
}

// `curl --http2 http://...` offers an upgrade to h2c; the server answers in HTTP/1.1, and the
// next request on the connection, arriving in pieces, is not mistaken for an upgrade.
TEST(RequestParser, AnOfferedUpgradeDoesNotSpillIntoTheNextRequest) {
  request_parser p;
  auto o = p.feed("GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n");
  ASSERT_EQ(o.state, request_parser::status::complete) << o.error;
  EXPECT_EQ(p.take().path, "/health");
  const std::string next = "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n";
  auto first = p.feed(std::string_view(next).substr(0, 10));
  ASSERT_EQ(first.state, request_parser::status::need_more) << first.error;
  auto rest = p.feed(std::string_view(next).substr(first.consumed));
  ASSERT_EQ(rest.state, request_parser::status::complete) << rest.error;
  EXPECT_EQ(p.take().path, "/v1/models");
}

TEST(RequestParser, KnowsWhoReadsChunkedBodies) {
  for (const auto& [version, chunked, keep_alive] :
       {std::tuple{"HTTP/1.1", true, true}, std::tuple{"HTTP/1.0", false, false}}) {
    request_parser p;
    const auto o = p.feed(std::string("GET /health ") + version + "\r\nHost: a\r\n\r\n");
    ASSERT_EQ(o.state, request_parser::status::complete) << o.error;
    const auto r = p.take();
    EXPECT_EQ(r.chunked_ok, chunked) << version;
    EXPECT_EQ(r.keep_alive, keep_alive) << version;
  }
}

TEST(RequestParser, ChunkedBodiesAreJoined) {
  request_parser p;
  auto o = p.feed("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                  "2\r\nde\r\n0\r\n\r\n");
  ASSERT_EQ(o.state, request_parser::status::complete) << o.error;
  EXPECT_EQ(p.take().body, "abcde");
}

TEST(RequestParser, RefusesWhatIsTooLargeOrMalformed) {
  {
    request_parser p({.max_header_bytes = 64, .max_body_bytes = 1024});
    auto o = p.feed("GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + std::string(200, 'a') + "\r\n\r\n");
    EXPECT_EQ(o.state, request_parser::status::error);
    EXPECT_EQ(o.http_status, 431);
  }
  {
    request_parser p({.max_header_bytes = 1024, .max_body_bytes = 10});
    auto o = p.feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n");
    EXPECT_EQ(o.state, request_parser::status::error);
    EXPECT_EQ(o.http_status, 413);
  }
  {
    request_parser p({.max_header_bytes = 1024, .max_body_bytes = 4});
    auto o = p.feed(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n");
    EXPECT_EQ(o.state, request_parser::status::error);
    EXPECT_EQ(o.http_status, 413);
  }
  {
    request_parser p;
    auto o = p.feed("NONSENSE\r\n\r\n");
    EXPECT_EQ(o.state, request_parser::status::error);
    EXPECT_EQ(o.http_status, 400);
    EXPECT_NE(o.error.find("malformed"), std::string::npos);
  }
}

TEST(RequestParser, RefusesWhatItWouldMisreadBeforeTheBody) {
  const std::vector<std::pair<std::string, int>> cases = {
      {"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\n", 415},
      {"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411},
      {"POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 3\r\n\r\n", 417},
      {"GET /v1/%zzmodels HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /v1/%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      // What a proxy in front might read otherwise (request smuggling): refused.
      {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n"
       "\r\n",
       400},
      {"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},
      {"GET /health HTTP/1.1\r\n\r\n", 400}, // HTTP/1.1 without Host
  };
  for (const auto& [text, status] : cases) {
    request_parser p;
    auto o = p.feed(text);
    EXPECT_EQ(o.state, request_parser::status::error) << text;
    EXPECT_EQ(o.http_status, status) << text << ": " << o.error;
    EXPECT_FALSE(o.error.empty());
  }
}

// Framings a proxy in front could read otherwise (request smuggling): each is refused with 400
// at the first byte that makes it ambiguous, never waited on or read leniently.
TEST(RequestParser, RefusesEveryAmbiguousFraming) {
  const std::string chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {chunked + "5\r\nabcdeXX0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", "longer than its size"},
      {chunked + "2\r\nabcdef\r\n0\r\n\r\n", "longer than its size"},
      {chunked + "3;a\nb\r\nabc\r\n0\r\n\r\n", "bare LF"},
      {chunked + "3 4\r\nabc\r\n0\r\n\r\n", "more than a size"},
      {chunked + "x\r\n", "not a hexadecimal"},
      {chunked + "3;\r\nabc\r\n0\r\n\r\n", "no name"},
      {chunked + "3;a=\"b\r\nabc\r\n0\r\n\r\n", "value is malformed"},
      {chunked + "ffffffffffffffffff\r\n", "too large"},
      {chunked + "3\r\nabc\r\n0\r\nX Bad: y\r\n\r\n", "trailer"},
      {"GET / HTTP/1.1\nHost: x\r\n\r\n", "bare LF"},
      {"GET / HTTP/1.1\r\nHost: x\n\r\n", "bare LF"},
      {"GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", "bare CR"},
      {"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", "request line"},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
       "both Content-Length and Transfer-Encoding"},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
       "more than once"},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", "not a number"},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", "not a number"},
      {"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", "control character"},
      {"GET / HTTP/1.1\r\n Host: x\r\n\r\n", "folded"},
      {"POST ?v1/completions HTTP/1.1\r\nHost: x\r\n\r\n", "a path ('/...') or an absolute URL"},
      {"GET h:80 HTTP/1.1\r\nHost: x\r\n\r\n", "a path ('/...') or an absolute URL"},
  };
  for (const auto& [text, fragment] : cases) {
    request_parser p;
    const auto o = p.feed(text);
    EXPECT_EQ(o.state, request_parser::status::error) << text;
    EXPECT_EQ(o.http_status, 400) << text << ": " << o.error;
    EXPECT_NE(o.error.find(fragment), std::string::npos) << text << ": " << o.error;
  }
  // The same, fed a byte at a time: refused as soon as it is certain, never complete.
  request_parser p;
  const std::string longer = chunked + "2\r\nabcdef\r\n0\r\n\r\n";
  std::size_t i = 0;
  for (; i < longer.size(); ++i) {
    const auto o = p.feed(std::string_view(longer).substr(i, 1));
    ASSERT_NE(o.state, request_parser::status::complete);
    if (o.state == request_parser::status::error)
      break;
  }
  EXPECT_EQ(i, chunked.size() + std::string("2\r\nab").size()) << "refused at the 'c'";
}

// Chunk extensions and trailers as RFC 9112 writes them are read (and dropped).
TEST(RequestParser, ChunkExtensionsAndTrailersThatFollowTheGrammarAreRead) {
  request_parser p;
  const auto o = p.feed("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "3 ; a = b ;c=\"d e\"\r\nabc\r\n1;x\r\nd\r\n0\r\nX-T: 1\r\n\r\n");
  ASSERT_EQ(o.state, request_parser::status::complete) << o.error;
  EXPECT_EQ(p.take().body, "abcd");
}

// The head limit counts every byte of the request line and headers: empty headers and padding
// included.
TEST(RequestParser, TheHeadLimitCountsEveryByte) {
  std::string empties = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 15000; ++i)
    empties += "X:\r\n";
  const std::string padded =
      "GET / HTTP/1.1\r\nHost: x\r\nX-A: " + std::string(60000, ' ') + "a\r\n\r\n";
  const std::string long_target = "GET /" + std::string(17000, 'a') + " HTTP/1.1\r\n";
  for (const auto& text : {empties + "\r\n", padded, long_target}) {
    request_parser p;
    const auto o = p.feed(text);
    EXPECT_EQ(o.state, request_parser::status::error);
    EXPECT_EQ(o.http_status, 431) << o.error;
  }
  // Just under the limit is fine.
  request_parser p({.max_header_bytes = 64, .max_body_bytes = 16});
  const std::string fits = "GET / HTTP/1.1\r\nHost: x\r\nX-A: " + std::string(30, 'a') + "\r\n\r\n";
  ASSERT_EQ(fits.size(), 64u);
  EXPECT_EQ(p.feed(fits).state, request_parser::status::complete);
  request_parser over({.max_header_bytes = 64, .max_body_bytes = 16});
  EXPECT_EQ(over.feed("GET / HTTP/1.1\r\nHost: x\r\nX-A: " + std::string(31, 'a') + "\r\n\r\n")
                .http_status,
            431);
  // A chunked body's trailers count with the head.
  request_parser trailers({.max_header_bytes = 100, .max_body_bytes = 16});
  const auto t = trailers.feed("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "1\r\na\r\n0\r\nX-T: " +
                               std::string(60, 'a') + "\r\n\r\n");
  EXPECT_EQ(t.http_status, 431);
  EXPECT_EQ(t.error, "the request line, headers and trailers are over the limit of 100 bytes");
}

// A header folded over lines (obsolete) reads as one line, the fold a space (RFC 9112, 5.2).
TEST(RequestParser, AFoldedHeaderReadsAsOneLine) {
  request_parser p;
  const auto o = p.feed("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n");
  ASSERT_EQ(o.state, request_parser::status::complete) << o.error;
  const auto r = p.take();
  ASSERT_NE(r.header("x-a"), nullptr);
  EXPECT_EQ(*r.header("x-a"), "a b");
}

TEST(RequestParser, AsksToBeToldToGoOnOnceWhenTheBodyIsNotInYet) {
  request_parser p;
  auto o = p.feed("POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  "Content-Length: 3\r\n\r\n");
  ASSERT_EQ(o.state, request_parser::status::need_more) << o.error;
  EXPECT_TRUE(o.send_continue);
  EXPECT_FALSE(p.feed("a").send_continue); // once
  EXPECT_EQ(p.feed("bc").state, request_parser::status::complete);
  EXPECT_EQ(p.take().body, "abc");
  // The body right behind the head: nothing to wait for, no interim answer.
  auto whole =
      p.feed("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx");
  EXPECT_EQ(whole.state, request_parser::status::complete);
  EXPECT_FALSE(whole.send_continue);
  p.take();
  // HTTP/1.0 clients get none (RFC 9110, 10.1.1).
  auto old = p.feed("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
  EXPECT_FALSE(old.send_continue);
}

TEST(RequestParser, PathsAreDecodedAndValuesTrimmed) {
  request_parser p;
  ASSERT_EQ(p.feed("GET http://example.com/v1/%6dodels/a%2Eb?x=%41 HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer k \t\r\n\r\n")
                .state,
            request_parser::status::complete);
  auto r = p.take();
  EXPECT_EQ(r.path, "/v1/models/a.b");
  ASSERT_NE(r.header("authorization"), nullptr);
  EXPECT_EQ(*r.header("authorization"), "Bearer k");
}

TEST(RequestParser, KnowsWhenARequestIsHalfWay) {
  request_parser p;
  EXPECT_FALSE(p.in_progress());
  p.feed("GET / HT");
  EXPECT_TRUE(p.in_progress());
  EXPECT_FALSE(p.headers_complete());
  p.feed("TP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na");
  EXPECT_TRUE(p.headers_complete());
  auto o = p.feed("bc");
  EXPECT_EQ(o.state, request_parser::status::complete);
  p.take();
  EXPECT_FALSE(p.in_progress());
}

TEST(Formatting, ResponsesAndChunksParseBack) {
  const std::string body = "{\"ok\":true}";
  std::string wire = format_response(404, {{"Content-Type", "application/json"}}, body, true);
  wire += format_chunked_head(200, {{"Content-Type", "text/event-stream"}}, false);
  wire += format_chunk("data: 1\n\n") + format_chunk("") + format_chunk("data: 2\n\n");
  wire += last_chunk();
  std::vector<int> statuses;
  std::vector<std::string> bodies(1);
  int completed = 0;
  response_parser p({.on_headers = [&](int s, const header_list&) { statuses.push_back(s); },
                     .on_body = [&](std::string_view d) { bodies.back() += d; },
                     .on_complete =
                         [&] {
                           ++completed;
                           bodies.emplace_back();
                         }});
  EXPECT_EQ(p.feed(wire), "");
  EXPECT_EQ(statuses, (std::vector<int>{404, 200}));
  EXPECT_EQ(completed, 2);
  EXPECT_EQ(bodies[0], body);
  EXPECT_EQ(bodies[1], "data: 1\n\ndata: 2\n\n");
  EXPECT_FALSE(p.keep_alive());
  EXPECT_EQ(reason_phrase(429), "Too Many Requests");
  EXPECT_NE(wire.find("\r\nDate: "), std::string::npos); // RFC 9110 asks origin servers for it
  EXPECT_NE(wire.find(" GMT\r\n"), std::string::npos);
}

TEST(SseReader, SplitsEventsAcrossArbitraryPieces) {
  const std::string stream =
      "data: {\"a\":1}\n\n: comment\n\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\n\n";
  for (std::size_t piece : {1u, 2u, 5u, 100u}) {
    sse_reader r;
    std::vector<std::string> got;
    for (std::size_t i = 0; i < stream.size(); i += piece)
      r.feed(std::string_view(stream).substr(i, piece),
             [&](const std::string& d) { got.push_back(d); });
    EXPECT_EQ(got, (std::vector<std::string>{"{\"a\":1}", "x\ny", "[DONE]"})) << piece;
  }
}

TEST(Url, PartsAndErrors) {
  auto u = parse_url("http://127.0.0.1:8000/api/");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, "8000");
  EXPECT_EQ(u->base, "/api");
  auto d = parse_url("http://localhost");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->port, "80");
  EXPECT_EQ(d->base, "");
  auto s = parse_url("https://example.com");
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message.find("only http://"), std::string::npos);
  EXPECT_FALSE(parse_url("not a url").has_value());
}

} // namespace
} // namespace aeg::server
