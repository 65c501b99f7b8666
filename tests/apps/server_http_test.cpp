// The server's HTTP side over real loopback TCP: keep-alive, HTTP/1.0 streams, the host names it
// answers to, JSON-only bodies, request ids, ambiguous framings and the head limit.

#include "tests/apps/server_fixture.hpp"
#include "tests/apps/server_support.hpp"

#include <asio.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <regex>
#include <set>
#include <string>

namespace aeg::server {
namespace {

using json = nlohmann::json;

TEST_F(Server, KeepAliveServesManyRequestsOnOneConnection) {
  auto c = client();
  for (int i = 0; i < 5; ++i) {
    auto r = c.request("POST", "/v1/completions",
                       json{{"model", "alpha"}, {"prompt", "Hello"}, {"max_tokens", 2}}.dump());
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
  }
  // Pipelined: two requests in one write, two answers in order.
  const std::string req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  const auto both = raw_exchange(server_->port(), req + "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                        "Connection: close\r\n\r\n");
  const auto first = both.find("HTTP/1.1 200"), second = both.find("HTTP/1.1 404");
  EXPECT_NE(first, std::string::npos) << both;
  EXPECT_NE(second, std::string::npos) << both;
  EXPECT_LT(first, second);
}

// HTTP/1.0 knows no chunks: a stream to such a client is plain bytes that end with the close,
// and carries the same text as the answer an HTTP/1.1 client gets.
TEST_F(Server, AnHttp10ClientGetsItsStreamCloseDelimited) {
  const json body = {{"model", "alpha"},
                     {"prompt", "The capital of France is"},
                     {"max_tokens", 6},
                     {"temperature", 0}};
  auto [status, full] = post("/v1/completions", body);
  ASSERT_EQ(status, 200) << full.dump();
  json sbody = body;
  sbody["stream"] = true;
  const std::string payload = sbody.dump();
  const auto raw = raw_exchange(server_->port(),
                                "POST /v1/completions HTTP/1.0\r\nAuthorization: Bearer " +
                                    std::string(api_key) +
                                    "\r\nContent-Type: application/json\r\nContent-Length: " +
                                    std::to_string(payload.size()) + "\r\n\r\n" + payload,
                                false); // reads until the server closes
  ASSERT_EQ(status_of(raw), 200) << raw;
  const auto split = raw.find("\r\n\r\n");
  ASSERT_NE(split, std::string::npos) << raw;
  const std::string head = raw.substr(0, split);
  EXPECT_EQ(head.find("Transfer-Encoding"), std::string::npos) << head;
  EXPECT_NE(head.find("Connection: close"), std::string::npos) << head;
  std::string joined;
  bool done = false;
  sse_reader sse;
  sse.feed(std::string_view(raw).substr(split + 4), [&](const std::string& data) {
    if (data == "[DONE]") {
      done = true;
      return;
    }
    const auto e = json::parse(data);
    if (!e["choices"].empty())
      joined += e["choices"][0]["text"].get<std::string>();
  });
  EXPECT_TRUE(done);
  EXPECT_EQ(joined, full["choices"][0]["text"].get<std::string>());
  EXPECT_TRUE(drained());
}

TEST_F(Server, ItAnswersOnlyToItsOwnHostNames) {
  const auto port = std::to_string(server_->port());
  auto health = [&](const std::string& host_line) {
    return raw_exchange(server_->port(),
                        "GET /health HTTP/1.1\r\n" + host_line + "Connection: close\r\n\r\n");
  };
  for (const std::string& h : std::vector<std::string>{"127.0.0.1:" + port, "localhost:" + port,
                                                       "LOCALHOST", "[::1]:" + port, "127.0.0.1"})
    EXPECT_EQ(status_of(health("Host: " + h + "\r\n")), 200) << h;
  for (const std::string& h :
       std::vector<std::string>{"evil.example:" + port, "127.0.0.1.evil.example", "10.0.0.1"}) {
    const auto rebound = health("Host: " + h + "\r\n");
    EXPECT_EQ(status_of(rebound), 403) << rebound;
    EXPECT_NE(rebound.find("host_not_allowed"), std::string::npos) << rebound;
    EXPECT_NE(rebound.find("--allowed-hosts"), std::string::npos) << rebound;
  }
  // HTTP/1.0 without a Host comes from no browser.
  EXPECT_EQ(status_of(raw_exchange(server_->port(), "GET /health HTTP/1.0\r\n\r\n")), 200);
}

TEST_F(Server, PostBodiesMustBeJson) {
  const std::string body = R"({"model": "alpha", "prompt": "Hi", "max_tokens": 1})";
  auto post_as = [&](const std::string& content_type_line) {
    return raw_exchange(server_->port(),
                        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
                        "Bearer " +
                            api_key + "\r\n" + content_type_line +
                            "Connection: close\r\nContent-Length: " + std::to_string(body.size()) +
                            "\r\n\r\n" + body,
                        false);
  };
  for (const std::string ct :
       {"Content-Type: text/plain\r\n", "Content-Type: application/x-www-form-urlencoded\r\n",
        "Content-Type: multipart/form-data; boundary=x\r\n", ""}) {
    const auto r = post_as(ct);
    EXPECT_EQ(status_of(r), 415) << ct << r;
    EXPECT_NE(r.find("Content-Type: application/json'"), std::string::npos) << r;
  }
  const auto json_ok = post_as("Content-Type: Application/JSON; charset=utf-8\r\n");
  EXPECT_EQ(status_of(json_ok), 200) << json_ok;
}

TEST_F(Server, EveryAnswerCarriesARequestId) {
  const std::regex made("req-[0-9a-f]{16}");
  const std::string key = "Authorization: Bearer " + api_key + "\r\n";
  const std::string body = R"({"model": "alpha", "prompt": "Hi", "max_tokens": 2, "stream": true})";
  std::set<std::string> ids;
  for (const std::string& req : std::vector<std::string>{
           "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
           "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
           "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
           "HEAD /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + key + "Connection: close\r\n\r\n",
           std::string("BLAH\r\n\r\n"),
           "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + key +
               "Content-Type: application/json\r\nConnection: close\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body}) {
    const auto raw = raw_exchange(server_->port(), req, false);
    const auto id = header_of(raw, "X-Request-Id");
    EXPECT_TRUE(std::regex_match(id, made)) << raw;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 6u) << "each answer its own id";
  auto with_id = [&](const std::string& id) {
    return header_of(raw_exchange(server_->port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                   "X-Request-Id: " +
                                                       id + "\r\nConnection: close\r\n\r\n"),
                     "X-Request-Id");
  };
  EXPECT_EQ(with_id("trace-42/abc.1"), "trace-42/abc.1");
  EXPECT_TRUE(std::regex_match(with_id("a\"quoted id"), made));
  EXPECT_TRUE(std::regex_match(with_id(std::string(200, 'a')), made));
}

// Each framing a proxy in front could read otherwise gets 400, and the connection closes: what
// follows on it (here a second request) is never answered.
TEST_F(Server, AmbiguousChunkedFramingsAre400AndCloseTheConnection) {
  const std::string head =
      "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
      "Bearer " +
      api_key + "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string next = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  for (const std::string& body :
       {std::string("2\r\n{}XX0\r\n\r\n"),        // data longer than its size
        std::string("2;a\nb\r\n{}\r\n0\r\n\r\n"), // bare LF
        std::string("3 4\r\n{}\r\n0\r\n\r\n"), std::string("2\r\nabcdef\r\n0\r\n\r\n")}) {
    const auto raw = raw_exchange(server_->port(), head + body + next, false); // until it closes
    EXPECT_EQ(status_of(raw), 400) << body << "\n" << raw;
    EXPECT_EQ(raw.find("HTTP/1.1", 1), std::string::npos) << "a second answer: " << raw;
    EXPECT_NE(raw.find("Connection: close"), std::string::npos) << raw;
  }
}

// The head limit (8 KiB here) counts every byte of the head: thousands of empty headers, or one
// value padded with spaces, get 431.
TEST_F(Server, TheHeadLimitCountsEveryByte) {
  std::string empties = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (int i = 0; i < 15000; ++i)
    empties += "X:\r\n";
  const std::string padded =
      "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: " + std::string(60000, ' ') + "a\r\n\r\n";
  for (const auto& req : {empties + "\r\n", padded}) {
    const auto raw = raw_exchange(server_->port(), req, false);
    EXPECT_EQ(status_of(raw), 431) << raw.substr(0, 300);
  }
}

} // namespace
} // namespace aeg::server
