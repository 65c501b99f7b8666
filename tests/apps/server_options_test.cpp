// Servers started with options of their own over loopback TCP with the real SmolLM2 (skipped
// when it has not been fetched): start-up checks, CORS, load and per-client limits, host names.

#include "tests/apps/running_server.hpp"
#include "tests/apps/server_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <thread>
#include <vector>

namespace aeg::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Whether /metrics came to satisfy `ok` within a bounded number of polls (a condition, not a
// duration, is what the tests wait for).
bool await_metrics(http_client& probe, const std::function<bool(const std::string&)>& ok) {
  for (int i = 0; i < 400; ++i) {
    auto m = probe.request("GET", "/metrics");
    if (m && ok(m->body))
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// A synthetic model needs a tokenizer of its vocabulary to serve text: said before anything
// loads, with the vocab_size that would borrow one; with it, the check passes.
TEST(ServerCheck, ASyntheticModelWithoutATokenizerIsNamedBeforeLoading) {
  if (!fs::exists(model_path))
    GTEST_SKIP() << model_path << " is absent: run scripts/fetch-model";
  const model_folder models("server-check");
  const auto& dir = models.dir();
  auto topology = [&](const json& big) {
    const auto path = (dir / "topology.json").string();
    std::ofstream(path) << json{{"devices", {{{"name", "cpu0"}, {"backend", "cpu"}}}},
                                {"models", {{{"name", "chat"}, {"gguf", model_path}}, big}},
                                {"instances", {{{"device", "cpu0"}}}}}
                               .dump();
    serve_options o;
    o.config = path;
    return server::check(o);
  };
  const auto without = topology({{"name", "big"}, {"synthetic", "llama-2-7b"}});
  ASSERT_FALSE(without);
  EXPECT_NE(without.error().message.find("model 'big' has synthetic weights and no tokenizer of "
                                         "its 32000-token vocabulary"),
            std::string::npos)
      << without.error().message;
  EXPECT_NE(without.error().message.find("\"vocab_size\": 49152 to use the tokenizer of 'chat'"),
            std::string::npos)
      << without.error().message;
  const auto with =
      topology({{"name", "big"}, {"synthetic", "smollm2-135m"}, {"vocab_size", 49152}});
  EXPECT_TRUE(with) << with.error().message;
}

// With --cors-origin, a browser's preflight learns what it may send, and every answer (JSON
// or a stream) names the origin that may read it.
TEST(ServerCors, PreflightsAndAnswersCarryTheAllowedOrigin) {
  if (!fs::exists(model_path))
    GTEST_SKIP() << model_path << " is absent: run scripts/fetch-model";
  const model_folder models("server-cors");
  auto o = models.options();
  o.api_key = "k";
  o.cors_origin = "http://localhost:3000";
  running_server srv(o);
  ASSERT_EQ(srv.error(), "");
  // The preflight carries no key (browsers never send one there) and is answered anyway.
  const auto preflight = raw_exchange(
      srv.port(), "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: "
                  "http://localhost:3000\r\nAccess-Control-Request-Method: POST\r\n"
                  "Connection: close\r\n\r\n");
  EXPECT_EQ(status_of(preflight), 204) << preflight;
  for (const char* h : {"Access-Control-Allow-Origin: http://localhost:3000",
                        "Access-Control-Allow-Methods: POST, OPTIONS",
                        "Access-Control-Allow-Headers: Authorization, Content-Type"})
    EXPECT_NE(preflight.find(h), std::string::npos) << h << " in\n" << preflight;
  const std::string body =
      json{{"model", "tiny"}, {"prompt", "Hi"}, {"max_tokens", 2}, {"stream", true}}.dump();
  const auto streamed = raw_exchange(
      srv.port(),
      "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer k\r\n"
      "Content-Type: application/json\r\nConnection: close\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\n\r\n" + body,
      false); // a half-closed connection reads as a client gone, which cancels a stream
  EXPECT_EQ(status_of(streamed), 200) << streamed;
  EXPECT_NE(streamed.find("Access-Control-Allow-Origin: http://localhost:3000"), std::string::npos)
      << streamed;
  const auto refused = raw_exchange(srv.port(), "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                "Connection: close\r\n\r\n");
  EXPECT_EQ(status_of(refused), 401) << refused;
  EXPECT_NE(refused.find("Access-Control-Allow-Origin: http://localhost:3000"), std::string::npos)
      << "an error a page can read: " << refused;
}

TEST(ServerLimits, TooMuchLoadGets429AndShutdownEndsEveryRequest) {
  if (!fs::exists(model_path))
    GTEST_SKIP() << model_path << " is absent: run scripts/fetch-model";
  const model_folder models("server-limits");
  auto o = models.options();
  o.max_in_flight = 2;
  o.grace_seconds = 0.5;
  running_server srv(o);
  ASSERT_EQ(srv.error(), "");
  const json long_request = {{"model", "tiny"},
                             {"prompt", "Once upon a time"},
                             {"max_tokens", 3000},
                             {"ignore_eos", true}};
  // Two long requests fill the server; the third is refused at once with Retry-After.
  std::vector<std::future<std::pair<int, std::string>>> running;
  for (int i = 0; i < 2; ++i)
    running.push_back(std::async(std::launch::async, [&] {
      http_client c(srv.url());
      auto r = c.request("POST", "/v1/completions", long_request.dump());
      return r ? std::pair{r->status, r->body} : std::pair{0, r.error().message};
    }));
  http_client probe(srv.url());
  // Once both run (the metrics say so), the next is refused at once with Retry-After.
  ASSERT_TRUE(await_metrics(probe, [](const std::string& page) {
    return page.find("aegaeon_requests_running{model=\"tiny\"} 2") != std::string::npos;
  }));
  auto r = probe.request("POST", "/v1/completions",
                         json{{"model", "tiny"}, {"prompt", "x"}, {"max_tokens", 1}}.dump());
  ASSERT_TRUE(r.has_value());
  const int status = r->status;
  bool retry_after = false;
  for (const auto& [k, v] : r->headers)
    retry_after |= k == "retry-after";
  EXPECT_TRUE(retry_after);
  EXPECT_NE(r->body.find("rate_limit_exceeded"), std::string::npos);
  EXPECT_EQ(status, 429);
  // An operator sees the refusal in /metrics.
  auto m = probe.request("GET", "/metrics", "");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(metric(m->body, "aegaeon_http_errors_total{status=\"429\"}"), 1.0) << m->body;
  // Shutdown with both still running: each gets an answer (an error saying why), nothing hangs.
  EXPECT_EQ(srv.stop(), 0);
  for (auto& f : running) {
    auto [st, body] = f.get();
    EXPECT_EQ(st, 503) << body;
    EXPECT_NE(body.find("shut down"), std::string::npos) << body;
  }
}

// One client cannot take every place in the server, and prompts past the operator's cap are
// refused before any work; both say what to do.
TEST(ServerLimits, OneClientGetsItsShareAndLongPromptsAreRefused) {
  if (!fs::exists(model_path))
    GTEST_SKIP() << model_path << " is absent: run scripts/fetch-model";
  const model_folder models("server-caps");
  auto o = models.options();
  o.max_in_flight = 8;
  o.max_client_requests = 1;
  o.max_prompt_tokens = 8;
  o.grace_seconds = 0.5;
  running_server srv(o);
  ASSERT_EQ(srv.error(), "");
  http_client probe(srv.url());
  auto post = [&](const json& body) {
    auto r = probe.request("POST", "/v1/completions", body.dump());
    EXPECT_TRUE(r.has_value());
    return r ? std::pair{r->status, json::parse(r->body, nullptr, false)} : std::pair{0, json{}};
  };
  // A prompt of more than 8 tokens: 400 naming the cap; one within it is served.
  auto [too_long, why] =
      post({{"model", "tiny"},
            {"prompt", "one two three four five six seven eight nine ten eleven twelve"},
            {"max_tokens", 1}});
  EXPECT_EQ(too_long, 400) << why.dump();
  EXPECT_EQ(why["error"]["code"], "prompt_too_long") << why.dump();
  EXPECT_EQ(why["error"]["param"], "prompt") << why.dump();
  EXPECT_NE(why["error"]["message"].get<std::string>().find("at most 8"), std::string::npos);
  EXPECT_EQ(post({{"model", "tiny"}, {"prompt", "Once upon"}, {"max_tokens", 1}}).first, 200);
  // More choices than one client may ever run at once: no use retrying, so 400 naming n.
  auto [too_many, n_why] = post({{"model", "tiny"}, {"prompt", "x"}, {"max_tokens", 1}, {"n", 2}});
  EXPECT_EQ(too_many, 400) << n_why.dump();
  EXPECT_EQ(n_why["error"]["param"], "n") << n_why.dump();
  // A long request holds this client's one place; its next is refused, with Retry-After.
  auto running = std::async(std::launch::async, [&] {
    http_client c(srv.url());
    auto r = c.request("POST", "/v1/completions",
                       json{{"model", "tiny"},
                            {"prompt", "Once upon a time"},
                            {"max_tokens", 3000},
                            {"ignore_eos", true}}
                           .dump());
    return r ? r->status : 0;
  });
  ASSERT_TRUE(await_metrics(probe, [](const std::string& page) {
    return metric(page, "aegaeon_requests_running") == 1;
  }));
  auto [refused, busy] = post({{"model", "tiny"}, {"prompt", "x"}, {"max_tokens", 1}});
  EXPECT_EQ(refused, 429) << busy.dump();
  EXPECT_EQ(busy["error"]["code"], "rate_limit_exceeded");
  EXPECT_NE(busy["error"]["message"].get<std::string>().find("from one"), std::string::npos)
      << busy.dump();
  EXPECT_EQ(srv.stop(), 0);
  EXPECT_EQ(running.get(), 503);
}

// A server on a loopback address answers to loopback names only: a web page that made its own
// name point at 127.0.0.1 (DNS rebinding) is refused, whatever the path.
// A page may post a form or plain text to another site without asking first; JSON it may not.
// So a POST body that is not JSON is refused, whatever it holds.
// Every answer carries X-Request-Id: the client's own when a log can carry it, else a new one.
// Names an operator allows, a key for /metrics, and a server on every address answering to any
// name.
TEST(ServerHosts, AllowedHostsWildcardAddressesAndAKeyForMetrics) {
  if (!fs::exists(model_path))
    GTEST_SKIP() << model_path << " is absent: run scripts/fetch-model";
  const model_folder models("server-hosts");
  auto o = models.options();
  o.api_key = "k";
  o.metrics_need_key = true;
  o.allowed_hosts = {"API.example.com"};
  {
    running_server srv(o);
    ASSERT_EQ(srv.error(), "");
    auto get = [&](const std::string& path, const std::string& lines) {
      // Not half-closed: a client that has gone gets no page.
      return status_of(raw_exchange(
          srv.port(), "GET " + path + " HTTP/1.1\r\n" + lines + "Connection: close\r\n\r\n",
          false));
    };
    EXPECT_EQ(get("/health", "Host: api.example.com:8443\r\n"), 200);
    EXPECT_EQ(get("/health", "Host: 127.0.0.1\r\n"), 200);
    EXPECT_EQ(get("/health", "Host: other.example.com\r\n"), 403);
    EXPECT_EQ(get("/metrics", "Host: 127.0.0.1\r\n"), 401);
    EXPECT_EQ(get("/metrics", "Host: 127.0.0.1\r\nAuthorization: Bearer k\r\n"), 200);
    EXPECT_EQ(get("/metrics", "Host: 127.0.0.1\r\nAuthorization: Bearer kk\r\n"), 401);
  }
  o.host = "0.0.0.0"; // every address: the operator chose to be reachable by any name
  o.allowed_hosts.clear();
  o.metrics_need_key = false;
  running_server any(o);
  ASSERT_EQ(any.error(), "");
  EXPECT_EQ(status_of(raw_exchange(any.port(),
                                   "GET /metrics HTTP/1.1\r\nHost: anything.example\r\nConnection: "
                                   "close\r\n\r\n",
                                   false)),
            200);
}

} // namespace
} // namespace aeg::server
