// The server over real loopback TCP with the real SmolLM2 (skipped when it has not been fetched):
// every endpoint, streaming and not, several models at once, every kind of bad input, a client
// leaving mid-stream (the HTTP side and servers with options of their own have files of theirs).

#include "apps/server/client.hpp"
#include "apps/server/server.hpp"
#include "models/gguf/file.hpp"
#include "models/tokenizer/tokenizer.hpp"
#include "tests/apps/running_server.hpp"
#include "tests/apps/server_fixture.hpp"
#include "tests/apps/server_support.hpp"

#include <asio.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <future>
#include <thread>

namespace aeg::server {
namespace {

using json = nlohmann::json;
using asio::ip::tcp;

TEST_F(Server, HealthModelsAndMetrics) {
  auto c = client();
  auto h = c.request("GET", "/health");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(json::parse(h->body)["status"], "ok");
  auto m = c.request("GET", "/v1/models");
  ASSERT_TRUE(m.has_value());
  const auto list = json::parse(m->body);
  std::vector<std::string> ids;
  for (const auto& d : list["data"])
    ids.push_back(d["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{"alpha", "beta", "noise"}));
  auto one = c.request("GET", "/v1/models/beta");
  EXPECT_EQ(one->status, 200);
  EXPECT_EQ(json::parse(one->body)["id"], "beta");
  const auto text = metrics();
  for (const char* family :
       {"aegaeon_requests_total", "aegaeon_time_to_first_token_seconds",
        "aegaeon_time_between_tokens_seconds", "aegaeon_slo_attainment_ratio",
        "aegaeon_instance_switches_total", "aegaeon_instance_switch_seconds_total",
        "aegaeon_model_resident", "aegaeon_queue_length"})
    EXPECT_NE(text.find(std::string("# TYPE ") + family), std::string::npos) << family;
}

TEST_F(Server, CompletionsGreedyAndStreamedAgree) {
  const json body = {{"model", "alpha"},
                     {"prompt", "The capital of France is"},
                     {"max_tokens", 12},
                     {"temperature", 0}};
  auto [status, full] = post("/v1/completions", body);
  ASSERT_EQ(status, 200) << full.dump();
  EXPECT_EQ(full["object"], "text_completion");
  const std::string text = full["choices"][0]["text"];
  EXPECT_EQ(text.rfind(" Paris", 0), 0u) << text;
  EXPECT_EQ(full["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(full["usage"]["completion_tokens"], 12);
  EXPECT_EQ(full["usage"]["prompt_tokens"], 5);

  json sbody = body;
  sbody["stream_options"] = {{"include_usage", true}};
  auto s = stream("/v1/completions", sbody);
  ASSERT_EQ(s.status, 200);
  EXPECT_TRUE(s.done);
  std::string joined;
  std::size_t token_events = 0;
  for (const auto& e : s.events)
    if (!e["choices"].empty()) {
      joined += e["choices"][0]["text"].get<std::string>();
      token_events += e["choices"][0]["finish_reason"].is_null();
    }
  EXPECT_EQ(joined, text);
  EXPECT_EQ(token_events, 12u); // one event per token
  ASSERT_FALSE(s.events.empty());
  EXPECT_TRUE(s.events.back()["choices"].empty());
  EXPECT_EQ(s.events.back()["usage"]["completion_tokens"], 12);
  EXPECT_TRUE(drained());
}

// Text held back to the very end (here: the answer's last character might begin a stop string
// that never completes) arrives on the final chunk, so the stream still has one event per token.
TEST_F(Server, TextHeldBackToTheEndRidesOnTheFinalChunk) {
  json body = {{"model", "alpha"},
               {"prompt", "The capital of France is"},
               {"max_tokens", 12},
               {"temperature", 0}};
  auto [status, full] = post("/v1/completions", body);
  ASSERT_EQ(status, 200) << full.dump();
  const std::string text = full["choices"][0]["text"];
  ASSERT_FALSE(text.empty());
  body["stop"] = json::array({text.substr(text.size() - 1) + "\x01"});
  auto [again_status, again] = post("/v1/completions", body);
  ASSERT_EQ(again_status, 200) << again.dump();
  EXPECT_EQ(again["choices"][0]["text"], text);
  EXPECT_EQ(again["choices"][0]["finish_reason"], "length");

  auto s = stream("/v1/completions", body);
  ASSERT_EQ(s.status, 200);
  ASSERT_TRUE(s.done);
  std::string joined;
  std::size_t token_events = 0;
  for (const auto& e : s.events) {
    joined += e["choices"][0]["text"].get<std::string>();
    token_events += e["choices"][0]["finish_reason"].is_null();
  }
  EXPECT_EQ(joined, text);
  EXPECT_EQ(token_events, 12u);
  EXPECT_EQ(s.events.back()["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(s.events.back()["choices"][0]["text"].get<std::string>().empty())
      << "the held-back character belongs on the final chunk";
  EXPECT_TRUE(drained());
}

TEST_F(Server, ChatStreamsWithRoleThenContentThenFinish) {
  auto s =
      stream("/v1/chat/completions",
             {{"model", "beta"},
              {"messages", {{{"role", "user"}, {"content", "What is the capital of France?"}}}},
              {"max_tokens", 24},
              {"temperature", 0}});
  ASSERT_EQ(s.status, 200);
  ASSERT_GE(s.events.size(), 2u);
  EXPECT_EQ(s.events.front()["object"], "chat.completion.chunk");
  EXPECT_EQ(s.events.front()["choices"][0]["delta"]["role"], "assistant");
  std::string answer;
  for (const auto& e : s.events)
    if (e["choices"][0]["delta"].contains("content"))
      answer += e["choices"][0]["delta"]["content"].get<std::string>();
  EXPECT_FALSE(answer.empty());
  const auto reason = s.events.back()["choices"][0]["finish_reason"];
  EXPECT_TRUE(reason == "stop" || reason == "length") << reason;
  EXPECT_TRUE(s.done);

  auto [status, full] =
      post("/v1/chat/completions",
           {{"model", "beta"},
            {"messages", {{{"role", "user"}, {"content", "What is the capital of France?"}}}},
            {"max_tokens", 24},
            {"temperature", 0}});
  ASSERT_EQ(status, 200);
  EXPECT_EQ(full["choices"][0]["message"]["content"], answer);
}

TEST_F(Server, StopStringsEndTheWork) {
  auto [status, full] = post("/v1/completions", {{"model", "alpha"},
                                                 {"prompt", "Count: 1, 2, 3,"},
                                                 {"max_tokens", 200},
                                                 {"temperature", 0},
                                                 {"stop", {"7"}}});
  ASSERT_EQ(status, 200) << full.dump();
  const std::string text = full["choices"][0]["text"];
  EXPECT_EQ(text.find('7'), std::string::npos) << text;
  EXPECT_EQ(full["choices"][0]["finish_reason"], "stop");
  EXPECT_LT(full["usage"]["completion_tokens"].get<int>(), 200);
  // A stop token id ends it too, and its text is not part of the answer (greedy: " Paris.").
  auto file = models::gguf::file::open(model_path);
  ASSERT_TRUE(file.has_value());
  auto tok = models::tokenizer::from_gguf(*file);
  ASSERT_TRUE(tok.has_value());
  const auto dot = tok->encode(".", false);
  ASSERT_EQ(dot.size(), 1u);
  auto [s2, byid] = post("/v1/completions", {{"model", "alpha"},
                                             {"prompt", "The capital of France is"},
                                             {"max_tokens", 50},
                                             {"temperature", 0},
                                             {"ignore_eos", true},
                                             {"stop", {dot[0]}}});
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(byid["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(byid["choices"][0]["text"], " Paris");
  EXPECT_LE(byid["usage"]["completion_tokens"].get<int>(), 2);
  // Special tokens written out in a prompt are those tokens: a prompt templated by hand.
  const std::string chatml = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
  auto [s3, templated] =
      post("/v1/completions",
           {{"model", "alpha"}, {"prompt", chatml}, {"max_tokens", 1}, {"temperature", 0}});
  ASSERT_EQ(s3, 200) << templated.dump();
  EXPECT_EQ(templated["usage"]["prompt_tokens"].get<std::size_t>(),
            tok->encode(chatml, true).size());
  EXPECT_LT(tok->encode(chatml, true).size(), tok->encode(chatml, false).size());
  EXPECT_TRUE(drained());
}

TEST_F(Server, ConcurrentClientsOnSeveralModelsGetTheirOwnAnswers) {
  const std::vector<std::string> prompts = {"The capital of France is", "Water boils at",
                                            "The largest planet is"};
  // Alone first: greedy answers per prompt (alpha and beta share weights, so they agree).
  std::vector<std::string> alone;
  for (const auto& p : prompts)
    alone.push_back(
        post("/v1/completions",
             {{"model", "alpha"}, {"prompt", p}, {"max_tokens", 16}, {"temperature", 0}})
            .second["choices"][0]["text"]);
  std::vector<std::future<std::string>> futures;
  for (int round = 0; round < 2; ++round)
    for (std::size_t i = 0; i < prompts.size(); ++i)
      for (const char* model : {"alpha", "beta", "noise"})
        futures.push_back(std::async(std::launch::async, [=] {
          auto [status, r] = post(
              "/v1/completions",
              {{"model", model}, {"prompt", prompts[i]}, {"max_tokens", 16}, {"temperature", 0}});
          if (status != 200)
            return std::string("HTTP ") + std::to_string(status) + r.dump();
          return std::string(model) + "|" + std::to_string(i) + "|" +
                 r["choices"][0]["text"].get<std::string>();
        }));
  std::size_t noise = 0;
  for (auto& f : futures) {
    const auto got = f.get();
    ASSERT_EQ(got.rfind("HTTP", 0), std::string::npos) << got;
    const auto a = got.find('|'), b = got.find('|', a + 1);
    const std::string model = got.substr(0, a);
    const std::size_t i = std::stoul(got.substr(a + 1, b - a - 1));
    if (model == "noise")
      ++noise; // random weights: any text, but it must come back
    else
      EXPECT_EQ(got.substr(b + 1), alone[i]) << model << " " << prompts[i];
  }
  EXPECT_EQ(noise, 2 * prompts.size());
  EXPECT_TRUE(drained());
  EXPECT_GT(metric(metrics(), "aegaeon_instance_switches_total"), 1);
}

TEST_F(Server, BadInputGetsOpenAIErrorsAndTheServerKeepsServing) {
  auto c = client();
  auto expect_error = [&](const std::string& path, const std::string& body, int status,
                          const std::string& fragment) {
    auto r = c.request("POST", path, body);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, status) << body << " -> " << r->body;
    const auto j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.contains("error")) << r->body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(fragment), std::string::npos)
        << r->body;
  };
  expect_error("/v1/completions", "{\"model\": ", 400, "not valid JSON");
  expect_error("/v1/completions", R"({"model": "gpt-9", "prompt": "x"})", 404, "does not exist");
  expect_error("/v1/completions", R"({"model": "alpha", "prompt": "x", "top_p": 7})", 400, "top_p");
  expect_error("/v1/chat/completions", R"({"model": "alpha", "messages": "hi"})", 400, "messages");
  json huge = {{"model", "alpha"}, {"prompt", std::vector<int>(9000, 42)}};
  expect_error("/v1/completions", huge.dump(), 400, "context");
  expect_error("/v1/completions", R"({"model": "alpha", "prompt": "x", "max_tokens": 100000})", 400,
               "max_tokens");
  expect_error("/v1/completions", R"({"model": "alpha", "prompt": [99999999]})", 400, "vocabulary");
  // Bytes that are not UTF-8, quoted back in the parser's message, and fields of unforeseen
  // types: client errors, answered as such.
  expect_error("/v1/completions", "{\"model\": \"\xff\xfe\"}", 400, "not valid JSON");
  expect_error("/v1/chat/completions",
               R"({"model": "alpha", "messages": [{"role": "user", "content": [{"type": 1}]}]})",
               400, "text");
  expect_error("/v1/completions",
               R"({"model": "alpha", "prompt": "x", "stop_token_ids": [4294967298]})", 400,
               "stop_token_ids");
  // A number no double holds, parameters this server would have to ignore, a message without
  // content, a stop id outside the vocabulary.
  expect_error("/v1/completions", R"({"model": "alpha", "prompt": "x", "seed": 1e400})", 400,
               "not valid JSON");
  expect_error("/v1/completions", R"({"model": "alpha", "prompt": "x", "seed": 1.5})", 400,
               "'seed' must be an integer");
  expect_error("/v1/completions",
               R"({"model": "alpha", "prompt": "x", "logit_bias": {"30": -100}})", 400,
               "logit_bias");
  expect_error("/v1/completions", R"({"model": "alpha", "prompt": "x", "presence_penalty": 0.5})",
               400, "presence_penalty");
  expect_error("/v1/completions", R"({"model": "alpha", "prompt": "x", "frequency_penalty": 9})",
               400, "between -2 and 2");
  expect_error("/v1/chat/completions",
               R"({"model": "alpha", "messages": [{"role": "user", "content": "x"}],
                   "response_format": {"type": "json_object"}})",
               400, "response_format");
  expect_error("/v1/chat/completions", R"({"model": "alpha", "messages": [{"role": "user"}]})", 400,
               "content is required");
  expect_error("/v1/completions", R"({"model": "alpha", "prompt": "x", "stop": [99999999]})", 400,
               "vocabulary");
  // An id outside the vocabulary is named by the field that gave it.
  for (const auto& [body, param] : std::vector<std::pair<std::string, std::string>>{
           {R"({"model": "alpha", "prompt": "x", "stop": [1, 99999999]})", "stop"},
           {R"({"model": "alpha", "prompt": "x", "stop": [1], "stop_token_ids": [99999999]})",
            "stop_token_ids"}}) {
    auto r = c.request("POST", "/v1/completions", body);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 400) << r->body;
    const auto j = json::parse(r->body, nullptr, false);
    EXPECT_EQ(j["error"]["param"], param) << r->body;
  }
  auto nf = c.request("GET", "/v2/nothing");
  EXPECT_EQ(nf->status, 404);
  auto wrong = c.request("GET", "/v1/completions");
  EXPECT_EQ(wrong->status, 405);
  auto allow = std::find_if(wrong->headers.begin(), wrong->headers.end(),
                            [](const auto& h) { return h.first == "allow"; });
  ASSERT_NE(allow, wrong->headers.end());
  EXPECT_EQ(allow->second, "POST, OPTIONS");
  {
    // HEAD gets GET's head without the body; OPTIONS lists the methods; the scheme of the key
    // is read in any case.
    const auto head =
        raw_exchange(server_->port(), "HEAD /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      "Authorization: bearer " +
                                          api_key + "\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(status_of(head), 200) << head;
    EXPECT_NE(head.find("Content-Length: "), std::string::npos);
    EXPECT_EQ(head.substr(head.find("\r\n\r\n") + 4), "") << head;
    const auto options =
        raw_exchange(server_->port(), "OPTIONS /v1/completions HTTP/1.1\r\n"
                                      "Host: 127.0.0.1\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(status_of(options), 204) << options;
    EXPECT_NE(options.find("Allow: POST, OPTIONS"), std::string::npos) << options;
    EXPECT_EQ(options.find("Access-Control-"), std::string::npos) << "no CORS unless asked";
  }
  {
    // A client that waits for "100 Continue" before its body gets it, then its answer.
    asio::io_context io;
    tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), server_->port()});
    const std::string body = R"({"model": "alpha", "prompt": "Hi", "max_tokens": 1})";
    asio::write(s, asio::buffer(completion_head(body.size(),
                                                "Expect: 100-continue\r\nConnection: close\r\n")));
    std::string got;
    std::array<char, 4096> buf{};
    asio::error_code ec;
    while (got.find("\r\n\r\n") == std::string::npos && !ec)
      got.append(buf.data(), s.read_some(asio::buffer(buf), ec));
    EXPECT_EQ(got.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0), 0u) << got;
    asio::write(s, asio::buffer(body));
    got.clear();
    for (ec = {}; !ec;)
      got.append(buf.data(), s.read_some(asio::buffer(buf), ec));
    EXPECT_EQ(status_of(got), 200) << got;
  }

  // Authentication.
  http_client anonymous(server_->url());
  auto r401 = anonymous.request("GET", "/v1/models");
  EXPECT_EQ(r401->status, 401);
  EXPECT_NE(r401->body.find("invalid_api_key"), std::string::npos);
  http_client wrong_key(server_->url(), "nope");
  EXPECT_EQ(wrong_key.request("GET", "/v1/models")->status, 401);
  EXPECT_EQ(anonymous.request("GET", "/health")->status, 200); // health needs no key

  // A body over the limit, headers over the limit, malformed HTTP, headers too slow.
  const auto port = server_->port();
  EXPECT_EQ(status_of(raw_exchange(port, "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                         "Content-Length: 1000000\r\n\r\n")),
            413);
  // ... also when the client sends all of its body before reading: the server reads and drops
  // it instead of resetting the connection under the answer.
  EXPECT_EQ(status_of(raw_exchange(port, "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                         "Content-Length: 3000000\r\n\r\n" +
                                             std::string(3000000, 'x'))),
            413);
  EXPECT_EQ(status_of(raw_exchange(
                port, "GET /health HTTP/1.1\r\nX-Big: " + std::string(10000, 'a') + "\r\n\r\n")),
            431);
  EXPECT_EQ(status_of(raw_exchange(port, "BLAH\r\n\r\n")), 400);
  const auto slow = raw_exchange(port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n", false);
  EXPECT_EQ(status_of(slow), 408) << slow;

  // Still serving.
  auto [status, ok] =
      post("/v1/completions", {{"model", "alpha"}, {"prompt", "Hi"}, {"max_tokens", 2}});
  EXPECT_EQ(status, 200) << ok.dump();
  EXPECT_TRUE(drained());
}

TEST_F(Server, AClientLeavingMidStreamCancelsItsRequestAndFreesItsKV) {
  const auto before = metric(metrics(), "aegaeon_requests_total");
  {
    asio::io_context io;
    tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), server_->port()});
    const std::string body = endless_stream("alpha", 4000);
    asio::write(s, asio::buffer(completion_head(body.size()) + body));
    // Read until a few tokens have streamed, then vanish.
    std::string got;
    std::array<char, 4096> buf{};
    while (std::count(got.begin(), got.end(), '\n') < 12)
      got.append(buf.data(), s.read_some(asio::buffer(buf)));
    EXPECT_NE(got.find("text/event-stream"), std::string::npos);
  } // the socket closes here
  EXPECT_TRUE(drained());
  const auto m = metrics();
  EXPECT_EQ(metric(m, "aegaeon_requests_total") - before, 1);
  // Every served model's gauges are there, zeros included.
  EXPECT_NE(m.find("aegaeon_queue_length{model=\"noise\"} 0"), std::string::npos);
  EXPECT_NE(m.find("finish_reason=\"cancelled\""), std::string::npos);
}

TEST_F(Server, AClientThatStopsReadingIsDroppedAndItsRequestCancelled) {
  auto cancelled = [] {
    const auto m = metrics();
    return metric(m, "aegaeon_requests_total{model=\"beta\",finish_reason=\"cancelled\"}");
  };
  const auto before = cancelled();
  asio::io_context io;
  tcp::socket s(io);
  s.open(tcp::v4());
  s.set_option(asio::socket_base::receive_buffer_size(4096)); // this client holds little
  s.connect({asio::ip::make_address("127.0.0.1"), server_->port()});
  const std::string body = endless_stream("beta", 6000);
  asio::write(s, asio::buffer(completion_head(body.size()) + body));
  // It reads nothing: once the server's bounded send buffer is full, its write timeout drops
  // the connection, long before 6000 tokens. Wait for that (bounded), without reading.
  for (int i = 0; i < 1200 && cancelled() == before; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(cancelled() - before, 1);
  EXPECT_TRUE(drained());
}

} // namespace
} // namespace aeg::server
