// The live view: token rates measured from samples (plain code, times given), and over real
// loopback TCP with the real SmolLM2 (skipped when it has not been fetched) `GET /status`'s
// fields and how they move with requests, and `GET /dashboard` as one self-contained page.

#include "apps/server/client.hpp"
#include "apps/server/token_rates.hpp"
#include "tests/apps/server_fixture.hpp"
#include "tests/apps/server_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

namespace aeg::server {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

TEST(TokenRates, TheFirstSampleHasNoRateAndLaterOnesMeasureFromIt) {
  token_rates r(5);
  const token_rates::clock::time_point t0{};
  auto first = r.sample(t0, {{"a", 100}, {"b", 0}});
  EXPECT_EQ(first.window_seconds, 0);
  EXPECT_EQ(first.per_second.at("a"), 0);
  auto second = r.sample(t0 + milliseconds(2000), {{"a", 140}, {"b", 10}});
  EXPECT_DOUBLE_EQ(second.window_seconds, 2);
  EXPECT_DOUBLE_EQ(second.per_second.at("a"), 20);
  EXPECT_DOUBLE_EQ(second.per_second.at("b"), 5);
}

TEST(TokenRates, TheWindowSlidesToTheNewestSampleOldEnough) {
  token_rates r(5);
  const token_rates::clock::time_point t0{};
  for (int s = 0; s <= 6; ++s) // 10 tokens a second until 6 s
    r.sample(t0 + milliseconds(1000 * s), {{"a", static_cast<std::size_t>(10 * s)}});
  // At 8 s the samples at 3 s and later are too young to span the window; 3 s is the start.
  auto at8 = r.sample(t0 + milliseconds(8000), {{"a", 60}});
  EXPECT_DOUBLE_EQ(at8.window_seconds, 5);
  EXPECT_DOUBLE_EQ(at8.per_second.at("a"), 30.0 / 5);
}

TEST(TokenRates, PollsCloserThanAFifthOfASecondAreMeasuredButNotKept) {
  token_rates r(5);
  const token_rates::clock::time_point t0{};
  r.sample(t0, {{"a", 0}});
  for (int ms = 10; ms <= 190; ms += 10) // a burst of pollers: each still measured from t0
    EXPECT_DOUBLE_EQ(r.sample(t0 + milliseconds(ms), {{"a", 0}}).window_seconds, ms / 1000.0);
  // A model that appeared since counts from 0.
  auto later = r.sample(t0 + milliseconds(1000), {{"a", 50}, {"new", 5}});
  EXPECT_DOUBLE_EQ(later.window_seconds, 1);
  EXPECT_DOUBLE_EQ(later.per_second.at("a"), 50);
  EXPECT_DOUBLE_EQ(later.per_second.at("new"), 5);
}

json status_of_server(http_client& c) {
  auto r = c.request("GET", "/status");
  EXPECT_TRUE(r.has_value());
  if (!r)
    return {};
  EXPECT_EQ(r->status, 200) << r->body;
  return json::parse(r->body);
}

const json& model_in(const json& st, const std::string& name) {
  for (const auto& m : st["models"])
    if (m["name"] == name)
      return m;
  static const json none;
  ADD_FAILURE() << "no model " << name << " in " << st.dump();
  return none;
}

TEST_F(Server, StatusListsEveryModelAndInstanceWithTheirFigures) {
  http_client c(server_->url()); // no key: /status needs one only with --metrics-need-key
  const auto st = status_of_server(c);
  EXPECT_EQ(st["object"], "aegaeon.status");
  EXPECT_EQ(st["status"], "ok");
  EXPECT_GE(st["uptime_seconds"].get<double>(), 0);
  EXPECT_EQ(st["switch_horizon_seconds"], 60);
  std::vector<std::string> names;
  for (const auto& m : st["models"]) {
    names.push_back(m["name"]);
    for (const char* k : {"queued", "running", "in_flight", "finished", "tokens_generated",
                          "tokens_per_second", "slo_attainment", "prompt_tokens"})
      EXPECT_TRUE(m.contains(k)) << k;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"alpha", "beta", "noise"}));
  for (const char* k : {"queued", "running", "finished", "tokens_generated", "tokens_per_second",
                        "instances_alive"})
    EXPECT_TRUE(st["totals"].contains(k)) << k;
  ASSERT_EQ(st["instances"].size(), 1u);
  const auto& inst = st["instances"][0];
  EXPECT_EQ(inst["name"], "cpu0/colocated#0");
  EXPECT_EQ(inst["device"], "cpu0");
  EXPECT_TRUE(inst["node"].is_null());
  EXPECT_EQ(inst["alive"], true);
  for (const char* k : {"active", "staged", "running", "waiting", "kv_bytes_used", "switches",
                        "switches_last_minute", "tokens_generated"})
    EXPECT_TRUE(inst.contains(k)) << k;
  EXPECT_TRUE(st["switches"].is_array());
}

TEST_F(Server, StatusCountsFinishedRequestsTokensAndSwitches) {
  auto c = client();
  const auto before = status_of_server(c);
  // Alpha, then beta: the one instance must make beta active to serve it.
  for (const char* model : {"alpha", "alpha", "beta"}) {
    auto [status, answer] = post("/v1/completions", {{"model", model},
                                                     {"prompt", "Once upon a time"},
                                                     {"max_tokens", 4},
                                                     {"ignore_eos", true}});
    ASSERT_EQ(status, 200) << answer.dump();
  }
  const auto after = status_of_server(c);
  const auto finished = [](const json& m) { return m["finished"].get<std::size_t>(); };
  const auto tokens = [](const json& m) { return m["tokens_generated"].get<std::size_t>(); };
  EXPECT_GE(finished(model_in(after, "alpha")), finished(model_in(before, "alpha")) + 2);
  EXPECT_GE(finished(model_in(after, "beta")), finished(model_in(before, "beta")) + 1);
  EXPECT_GE(tokens(model_in(after, "alpha")), tokens(model_in(before, "alpha")) + 8);
  EXPECT_GE(finished(after["totals"]), finished(before["totals"]) + 3);
  EXPECT_GE(tokens(after["totals"]), tokens(before["totals"]) + 12);
  EXPECT_GT(model_in(after, "alpha")["tokens_per_second"].get<double>(), 0);
  EXPECT_GT(after["rate_window_seconds"].get<double>(), 0);
  EXPECT_GE(after["uptime_seconds"].get<double>(), before["uptime_seconds"].get<double>());
  const auto& attainment = model_in(after, "alpha")["slo_attainment"];
  ASSERT_TRUE(attainment.is_number()) << after.dump();
  EXPECT_GE(attainment.get<double>(), 0);
  EXPECT_LE(attainment.get<double>(), 1);
  const auto& inst = after["instances"][0];
  EXPECT_GE(inst["tokens_generated"].get<std::size_t>(),
            before["instances"][0]["tokens_generated"].get<std::size_t>() + 12);
  EXPECT_GE(inst["switches_last_minute"].get<std::size_t>(), 1u);
  bool to_beta = false;
  for (const auto& s : after["switches"]) {
    EXPECT_EQ(s["instance"], "cpu0/colocated#0");
    EXPECT_GE(s["seconds_ago"].get<double>(), 0);
    EXPECT_LE(s["seconds_ago"].get<double>(), 60);
    EXPECT_TRUE(s.contains("scale_up_seconds") && s.contains("prefetched") && s.contains("from"));
    to_beta |= s["to"] == "beta";
  }
  EXPECT_TRUE(to_beta) << after["switches"].dump();
  EXPECT_TRUE(drained());
}

TEST_F(Server, DashboardIsOneSelfContainedPage) {
  http_client c(server_->url()); // the page holds no figures: no key
  auto r = c.request("GET", "/dashboard");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  auto header = [&](const std::string& name) {
    for (const auto& [k, v] : r->headers)
      if (k == name)
        return v;
    return std::string();
  };
  EXPECT_EQ(header("content-type").rfind("text/html", 0), 0u) << header("content-type");
  EXPECT_NE(header("content-security-policy").find("connect-src 'self'"), std::string::npos);
  const std::string& page = r->body;
  EXPECT_EQ(page.rfind("<!doctype html>", 0), 0u);
  for (const char* hook : {"id=\"models\"", "id=\"instances\"", "id=\"timeline\"",
                           "id=\"finished-total\"", "id=\"tokens-total\"", "fetch(\"/status\""})
    EXPECT_NE(page.find(hook), std::string::npos) << hook;
  // Nothing from anywhere else: no URL of another host, no external script, style or image.
  for (const char* outside : {"http://", "https://", "src=", "href=", "@import", "url(", "//cdn"})
    EXPECT_EQ(page.find(outside), std::string::npos) << outside;
  const auto head = raw_exchange(
      server_->port(), "HEAD /dashboard HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(head), 200);
  EXPECT_EQ(head.substr(head.find("\r\n\r\n") + 4), ""); // the head alone
}

} // namespace
} // namespace aeg::server
