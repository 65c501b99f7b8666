// The live view in a real browser: Debian's chromium, headless, loads `GET /dashboard` from a
// server in this process (real loopback TCP, the real SmolLM2, an API key that /status needs)
// and the DOM it builds from `GET /status` is read back. Skipped when chromium or the model is
// absent. Each browser run takes well under a second: the page's one-second polls run on
// chromium's virtual clock.

#include "apps/server/client.hpp"
#include "apps/server/server.hpp"
#include "tests/apps/child_process.hpp"
#include "tests/apps/running_server.hpp"
#include "tests/apps/server_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace aeg::server {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string dashboard_key = "dashboard-key";

// The browser: $AEG_CHROMIUM, else Debian's.
std::string chromium() {
  const char* env = std::getenv("AEG_CHROMIUM");
  return env != nullptr && *env != '\0' ? env : "/usr/bin/chromium";
}

bool have_chromium() {
  const auto path = chromium();
  return fs::is_regular_file(path) && ::access(path.c_str(), X_OK) == 0;
}

class Dashboard : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    if (!fs::exists(model_path) || !have_chromium())
      return;
    dir_ = fs::temp_directory_path() / ("aeg-dashboard-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const std::string topo = (dir_ / "topology.json").string();
    std::ofstream(topo) << json{
        {"devices", {{{"name", "cpu0"}, {"backend", "cpu"}, {"memory_mib", 1024}}}},
        {"models",
         {{{"name", "alpha"}, {"gguf", model_path}, {"ttft_s", 30}, {"tbt_s", 1}},
          {{"name", "beta"}, {"gguf", model_path}, {"ttft_s", 30}, {"tbt_s", 1}}}},
        {"instances", {{{"device", "cpu0"}, {"role", "colocated"}}}},
        {"host_kv_mib", 64}}.dump();
    serve_options o;
    o.config = topo;
    o.api_key = dashboard_key;
    o.metrics_need_key = true;
    server_ = new running_server(o);
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    if (!dir_.empty())
      fs::remove_all(dir_);
  }
  void SetUp() override {
    if (!have_chromium())
      GTEST_SKIP() << chromium() << " is absent: apt-get install chromium (scripts/setup does)";
    if (server_ == nullptr)
      GTEST_SKIP() << model_path << " is absent: run scripts/fetch-model";
    ASSERT_EQ(server_->error(), "");
  }

  static std::string page_url(const std::string& query = "?key=" + dashboard_key) {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + "/dashboard" + query;
  }

  // Runs headless chromium on `url` with `extra` flags (a throw-away profile) until it exits;
  // what it wrote to stdout.
  static std::string browse(const std::string& url, std::vector<std::string> extra) {
    std::vector<std::string> args = {chromium(),
                                     "--headless",
                                     "--no-sandbox",
                                     "--disable-gpu",
                                     "--no-first-run",
                                     "--disable-background-networking",
                                     "--disable-component-update",
                                     "--user-data-dir=" + (dir_ / "profile").string(),
                                     "--virtual-time-budget=2500"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(url);
    aeg::testing::child browser(args);
    EXPECT_TRUE(browser.started());
    EXPECT_EQ(browser.wait(), 0) << browser.err();
    return browser.out();
  }
  static std::string dom(const std::string& url) { return browse(url, {"--dump-dom"}); }

  static void complete(const std::string& model) {
    http_client c(server_->url(), dashboard_key);
    auto r = c.request("POST", "/v1/completions",
                       json{{"model", model},
                            {"prompt", "Once upon a time"},
                            {"max_tokens", 4},
                            {"ignore_eos", true}}
                           .dump());
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->status, 200) << r->body;
  }

  static inline running_server* server_ = nullptr;
  static inline fs::path dir_;
};

// The number after the first `marker` after `from`: an attribute's value when the marker ends in
// '=', else the text of the element it is in (digits grouped with commas as the page writes
// them); -1 when there is none.
long shown(const std::string& dom, const std::string& marker, const std::string& from = {}) {
  const auto start = from.empty() ? 0 : dom.find(from);
  if (start == std::string::npos)
    return -1;
  auto at = dom.find(marker, start);
  if (at == std::string::npos)
    return -1;
  at = marker.ends_with('=') ? at + marker.size() + 1 : dom.find('>', at) + 1;
  std::string digits;
  for (; at < dom.size() && (std::isdigit(static_cast<unsigned char>(dom[at])) || dom[at] == ',');
       ++at)
    if (dom[at] != ',')
      digits += dom[at];
  return digits.empty() ? -1 : std::stol(digits);
}

TEST_F(Dashboard, TheBrowserShowsTheServedModelsAndTheirCountsMove) {
  const auto before = dom(page_url());
  EXPECT_GE(shown(before, "data-updates="), 1) << before;
  for (const char* hook :
       {"data-model=\"alpha\"", "data-model=\"beta\"", "data-instance=\"cpu0/colocated#0\""})
    EXPECT_NE(before.find(hook), std::string::npos) << hook << " in " << before;
  EXPECT_NE(before.find(">live<"), std::string::npos) << before;
  const long finished = shown(before, "id=\"finished-total\"");
  const long tokens = shown(before, "id=\"tokens-total\"");
  const long alpha_finished = shown(before, "class=\"finished\"", "data-model=\"alpha\"");
  ASSERT_GE(finished, 0);
  ASSERT_GE(tokens, 0);
  ASSERT_GE(alpha_finished, 0);

  for (const char* model : {"alpha", "alpha", "beta"})
    complete(model);

  const auto after = dom(page_url());
  EXPECT_GE(shown(after, "id=\"finished-total\""), finished + 3) << after;
  EXPECT_GE(shown(after, "id=\"tokens-total\""), tokens + 12);
  EXPECT_GE(shown(after, "class=\"finished\"", "data-model=\"alpha\""), alpha_finished + 2);
  EXPECT_GE(shown(after, "class=\"finished\"", "data-model=\"beta\""), 1);
  // Beta had to become resident: the instance's lane shows a switch of the last minute.
  EXPECT_GE(shown(after, "data-switches=", "class=\"lane\""), 1) << after;
}

TEST_F(Dashboard, WithoutTheKeyThePageAsksForIt) {
  http_client anonymous(server_->url());
  auto r = anonymous.request("GET", "/status");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 401); // --metrics-need-key: /status as /metrics
  const auto page = dom(page_url(""));
  EXPECT_NE(page.find("needs the API key"), std::string::npos) << page;
  EXPECT_EQ(shown(page, "data-updates="), 0);
}

TEST_F(Dashboard, AScreenshotIsAPng) {
  const auto png = dir_ / "dashboard.png";
  browse(page_url(),
         {"--hide-scrollbars", "--window-size=1280,800", "--screenshot=" + png.string()});
  ASSERT_TRUE(fs::exists(png));
  EXPECT_GT(fs::file_size(png), 1000u);
  std::ifstream in(png, std::ios::binary);
  std::string magic(8, '\0');
  in.read(magic.data(), 8);
  EXPECT_EQ(magic, std::string("\x89PNG\r\n\x1a\n", 8));
}

} // namespace
} // namespace aeg::server
