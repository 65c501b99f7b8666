#pragma once

// One server for a whole test suite, over real loopback TCP with the real SmolLM2 (tests skip
// when it has not been fetched): two GGUF models and a synthetic one, an API key, tight timeouts
// and limits; clients, its /metrics, and a bounded wait until nothing is held.

#include "apps/server/client.hpp"
#include "apps/server/server.hpp"
#include "tests/apps/running_server.hpp"
#include "tests/apps/server_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace aeg::server {

const std::string api_key = "test-key";

class Server : public ::testing::Test {
protected:
  using json = nlohmann::json;

  static void SetUpTestSuite() {
    if (!std::filesystem::exists(model_path))
      return;
    dir_ =
        std::filesystem::temp_directory_path() / ("aeg-server-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    const std::string topo = (dir_ / "topology.json").string();
    std::ofstream(topo) << json{
        {"devices", {{{"name", "cpu0"}, {"backend", "cpu"}, {"memory_mib", 1024}}}},
        {"models",
         {{{"name", "alpha"}, {"gguf", model_path}, {"ttft_s", 30}, {"tbt_s", 1}},
          {{"name", "beta"}, {"gguf", model_path}, {"ttft_s", 30}, {"tbt_s", 1}},
          {{"name", "noise"}, {"synthetic", "smollm2-135m"}, {"seed", 3}}}},
        {"instances", {{{"device", "cpu0"}, {"role", "colocated"}}}},
        {"host_kv_mib", 128}}.dump();
    serve_options o;
    o.config = topo;
    o.api_key = api_key;
    o.header_timeout_seconds = 1;
    o.write_timeout_seconds = 2;
    o.limits.max_body_bytes = 256 * 1024;
    o.limits.max_header_bytes = 8 * 1024;
    server_ = new running_server(o);
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    if (!dir_.empty())
      std::filesystem::remove_all(dir_);
  }
  void SetUp() override {
    if (server_ == nullptr)
      GTEST_SKIP() << model_path << " is absent: run scripts/fetch-model";
    ASSERT_EQ(server_->error(), "");
  }

  static http_client client() { return http_client(server_->url(), api_key); }

  // POSTs a JSON body; the parsed answer and its status.
  static std::pair<int, json> post(const std::string& path, const json& body) {
    auto c = client();
    auto r = c.request("POST", path, body.dump());
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    if (!r)
      return {0, {}};
    return {r->status, json::parse(r->body, nullptr, false)};
  }

  // A streamed request: the events' JSON, in order, and whether [DONE] ended them.
  struct streamed {
    int status = 0;
    std::vector<json> events;
    bool done = false;
  };
  static streamed stream(const std::string& path, json body) {
    body["stream"] = true;
    streamed s;
    sse_reader sse;
    auto c = client();
    auto r = c.request("POST", path, body.dump(), [&](std::string_view d) {
      sse.feed(d, [&](const std::string& data) {
        if (data == "[DONE]")
          s.done = true;
        else
          s.events.push_back(json::parse(data));
      });
    });
    EXPECT_TRUE(r.has_value());
    s.status = r ? r->status : 0;
    return s;
  }

  // The head of an authorized POST /v1/completions whose body has `body_bytes`; `extra` holds
  // more header lines, each ending in CRLF. For clients written on raw sockets.
  static std::string completion_head(std::size_t body_bytes, const std::string& extra = {}) {
    return "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + api_key +
           "\r\nContent-Type: application/json\r\n" + extra +
           "Content-Length: " + std::to_string(body_bytes) + "\r\n\r\n";
  }

  // A streamed completion that runs for `max_tokens` tokens whatever the model says.
  static std::string endless_stream(const std::string& model, int max_tokens) {
    return json{{"model", model},
                {"prompt", "Once upon a time"},
                {"max_tokens", max_tokens},
                {"ignore_eos", true},
                {"stream", true}}
        .dump();
  }

  static std::string metrics() {
    auto c = client();
    auto r = c.request("GET", "/metrics");
    EXPECT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
    return r ? r->body : "";
  }

  // Waits (bounded) until no request runs and no KV block is held anywhere.
  static bool drained() {
    for (int i = 0; i < 400; ++i) {
      const auto m = metrics();
      if (metric(m, "aegaeon_requests_running") == 0 &&
          metric(m, "aegaeon_instance_kv_bytes_used") == 0 &&
          metric(m, "aegaeon_instance_running_sequences") == 0 &&
          metric(m, "aegaeon_pool_requests_in_flight") == 0)
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  static inline running_server* server_ = nullptr;
  static inline std::filesystem::path dir_;
};

} // namespace aeg::server
