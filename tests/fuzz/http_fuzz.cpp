#include "tests/fuzz/http_fuzz.hpp"

#include "apps/server/http.hpp"
#include "apps/server/openai.hpp"
#include "coro/assert.hpp"

#include <algorithm>
#include <string_view>

namespace aeg::testing {

namespace {

using server::request_parser;

// What reading a connection's bytes gave: each request read, then the refusal (0: none).
struct reading {
  std::vector<server::http_request> requests;
  int refused = 0;
  std::string why;
};

bool same(const server::http_request& a, const server::http_request& b) {
  return a.method == b.method && a.target == b.target && a.path == b.path &&
         a.headers == b.headers && a.body == b.body && a.keep_alive == b.keep_alive &&
         a.chunked_ok == b.chunked_ok;
}

// Feeds `bytes` in pieces of the sizes `piece` gives (0: all at once), as a connection does:
// what the parser did not consume waits for the next feed.
reading read_all(std::string_view bytes, const server::request_limits& limits,
                 std::size_t (*piece)(std::size_t, std::uint8_t), std::uint8_t seed) {
  reading out;
  request_parser p(limits);
  std::string pending;
  std::size_t at = 0;
  for (std::size_t n = 0; at < bytes.size(); ++n) {
    const std::size_t take = std::min(piece(n, seed), bytes.size() - at);
    pending.append(bytes.substr(at, take));
    at += take;
    for (;;) {
      const auto o = p.feed(pending);
      AEG_ASSERT(o.consumed <= pending.size(), "consumed more than it was given");
      pending.erase(0, o.consumed);
      if (o.state == request_parser::status::error) {
        AEG_ASSERT(!o.error.empty(), "a refusal must say why");
        for (int known : {400, 411, 413, 415, 417, 431, 501, 505})
          if (o.http_status == known)
            out.refused = known;
        AEG_ASSERT(out.refused != 0, "a refusal with a status the server does not answer");
        out.why = o.error;
        return out;
      }
      if (o.state == request_parser::status::need_more) {
        AEG_ASSERT(pending.empty(), "a parser that needs more must take all it was given");
        break;
      }
      auto r = p.take();
      AEG_ASSERT(!r.method.empty() && !r.target.empty() && !r.path.empty(),
                 "a request without a method, target or path");
      AEG_ASSERT(r.body.size() <= limits.max_body_bytes, "a body over the limit");
      out.requests.push_back(std::move(r));
    }
  }
  return out;
}

std::size_t whole(std::size_t, std::uint8_t) {
  return static_cast<std::size_t>(-1);
}

// Pieces of 1 to 16 bytes in a pattern the seed picks.
std::size_t pieces(std::size_t n, std::uint8_t seed) {
  return 1 + (seed + n * 7 + (n * n) % 5) % 16;
}

} // namespace

int http_fuzz_one(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  // Small limits, so that the limits' own paths are reached too.
  const server::request_limits limits{.max_header_bytes = 512 + std::size_t{data[0]} % 4 * 256,
                                      .max_body_bytes = 2048};
  const auto at_once = read_all(bytes, limits, whole, data[0]);
  const auto in_pieces = read_all(bytes, limits, pieces, data[0]);
  AEG_ASSERT(at_once.requests.size() == in_pieces.requests.size() &&
                 at_once.refused == in_pieces.refused,
             "the same bytes read differently in pieces");
  for (std::size_t i = 0; i < at_once.requests.size(); ++i)
    AEG_ASSERT(same(at_once.requests[i], in_pieces.requests[i]),
               "a request read differently in pieces");
  // What the server then does with a body: the OpenAI parser must answer, never fault.
  for (const auto& r : at_once.requests) {
    const bool chat = r.path.find("chat") != std::string::npos;
    const auto p = server::parse_completion(r.body, chat);
    AEG_ASSERT(p.has_value() || (p.error().status >= 400 && !p.error().message.empty()),
               "a refused body must say why");
  }
  return 0;
}

std::vector<std::string> http_seed_corpus() {
  const std::string chat_body =
      R"({"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stream":true})";
  const std::string body = R"({"model":"m","prompt":[1,2,3],"stop":["x"],"seed":7})";
  const std::string len = std::to_string(body.size());
  const std::string chunked = "POST /v1/completions HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
                              "chunked\r\nContent-Type: application/json\r\n\r\n";
  return {
      "GET /health HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET /v1/models HTTP/1.0\r\n\r\nGET /v1/models/m HTTP/1.1\r\nHost: h\r\n\r\n",
      "POST /v1/completions HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
          len + "\r\n\r\n" + body,
      "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: " +
          std::to_string(chat_body.size()) + "\r\n\r\n" + chat_body,
      chunked + "5;a=b\r\n{\"mod\r\n8\r\nel\":\"m\"}\r\n0\r\nX-T: 1\r\n\r\n",
      chunked + "2\r\nabcdef\r\n0\r\n\r\n",
      chunked + "3;a\nb\r\nabc\r\n0\r\n\r\n",
      chunked + "3 4\r\nabc\r\n0\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET http://h/v1/%6dodels?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
  };
}

} // namespace aeg::testing
