// `aegaeon chat` as a user runs it: the real binary on pipes, with the real SmolLM2 (skipped when
// it is not fetched), in process or talking to a real server (in this process, over loopback
// TCP). Ctrl-C is a SIGINT sent to the binary, as the terminal sends it.

#include "tests/apps/child_process.hpp"
#include "tests/apps/running_server.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace aeg::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;
using aeg::testing::child;
using aeg::testing::deadline;

const std::string model_path =
    std::string(AEG_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

class CliChat : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    if (!fs::exists(model_path))
      return;
    dir_ = fs::temp_directory_path() / ("aeg-chat-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const std::string topo = (dir_ / "topology.json").string();
    std::ofstream(topo) << json{
        {"devices", {{{"name", "cpu0"}, {"backend", "cpu"}, {"memory_mib", 1024}}}},
        {"models", {{{"name", "talker"}, {"gguf", model_path}, {"ttft_s", 30}, {"tbt_s", 1}}}},
        {"instances", {{{"device", "cpu0"}, {"role", "colocated"}}}},
        {"host_kv_mib", 128}}.dump();
    serve_options o;
    o.config = topo;
    server_ = new running_server(o);
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    if (!dir_.empty())
      fs::remove_all(dir_);
  }
  void SetUp() override {
    if (server_ == nullptr)
      GTEST_SKIP() << model_path << " is absent: run scripts/fetch-model";
    ASSERT_EQ(server_->error(), "");
  }

  static std::vector<std::string> chat_args(int max_tokens) {
    return {AEG_BINARY,
            "chat",
            "--url",
            "http://127.0.0.1:" + std::to_string(server_->port()),
            "--model",
            "talker",
            "--max-tokens",
            std::to_string(max_tokens),
            "--temperature",
            "0",
            "-v"};
  }

  static double requests(const std::string& finish_reason) {
    http_client c(server_->url());
    auto r = c.request("GET", "/metrics");
    if (!r || r->status != 200)
      return -1;
    return metric(r->body, "aegaeon_requests_total{model=\"talker\",finish_reason=\"" +
                               finish_reason + "\"}");
  }

  static inline running_server* server_ = nullptr;
  static inline fs::path dir_;
};

TEST_F(CliChat, CtrlCStopsTheAnswerTheServerCancelsItAndTheChatGoesOn) {
  const double cancelled_before = requests("cancelled");
  child chat(chat_args(300));
  ASSERT_TRUE(chat.started());
  chat.send("Tell me a long story about a dragon who learns to fly.\n");
  // Mid-answer: some of it has arrived (300 tokens take far longer than the signal).
  ASSERT_TRUE(chat.await([&] { return chat.out().size() >= 10; })) << chat.err();
  chat.signal(SIGINT);
  ASSERT_TRUE(chat.await([&] { return chat.err().find("[stopped]") != std::string::npos; }))
      << "stdout:\n"
      << chat.out() << "\nstderr:\n"
      << chat.err();
  const std::size_t first_answer = chat.out().size();
  // The session goes on: a second message is answered in full, then end of input ends it.
  chat.send("Say hello.\n");
  chat.close_input();
  EXPECT_EQ(chat.wait(), 0) << chat.err();
  EXPECT_EQ(occurrences(chat.err(), "[stopped]"), 1u) << chat.err();
  // -v prints one line after each answer that ended by itself.
  EXPECT_EQ(occurrences(chat.err(), " prompt tokens, "), 1u) << chat.err();
  EXPECT_NE(chat.out().find_first_not_of(" \n", first_answer), std::string::npos) << chat.out();
  EXPECT_EQ(chat.err().find("aegaeon chat:"), std::string::npos) << chat.err();
  // The closed connection cancelled the request on the server (its count moves as the server
  // notices, so wait for it).
  const auto until = clock_type::now() + deadline;
  while (requests("cancelled") == cancelled_before && clock_type::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(requests("cancelled") - cancelled_before, 1);
}

TEST_F(CliChat, CtrlCAtThePromptEndsTheSession) {
  child chat(chat_args(8));
  ASSERT_TRUE(chat.started());
  chat.send("Say hello.\n");
  // The answer has ended (its -v line is written after it); the chat waits for the next line.
  ASSERT_TRUE(chat.await([&] { return chat.err().find(" prompt tokens, ") != std::string::npos; }))
      << chat.err();
  // A Ctrl-C that lands as the answer ends is forgotten, not taken for the next answer's, so
  // press it until the session ends: at the prompt, one is enough.
  chat.signal(SIGINT);
  for (int i = 0; i < 1200 && !chat.await_exit(std::chrono::milliseconds(100)); ++i)
    chat.signal(SIGINT);
  EXPECT_EQ(chat.wait(), 0) << chat.err();
  EXPECT_EQ(chat.err().find("[stopped]"), std::string::npos) << chat.err();
}

// A turn that fails is reported and the session goes on; at end of input it has ended as it
// should, so the exit code is 0 (a pipe of messages is not a failed command for one of them).
TEST(CliChatInProcess, AFailedTurnIsReportedAndEndOfInputStillExitsZero) {
  if (!fs::exists(model_path))
    GTEST_SKIP() << model_path << " is absent: run scripts/fetch-model";
  // Room for the model and the KV of one short answer, not for a prompt of thousands of tokens.
  child chat({AEG_BINARY, "chat", "--model", model_path, "--memory-mib", "140", "--max-tokens", "8",
              "--temperature", "0"});
  ASSERT_TRUE(chat.started());
  std::string longer;
  for (int i = 0; i < 3000; ++i)
    longer += "word ";
  chat.send(longer + "\nSay hello.\n");
  chat.close_input();
  EXPECT_EQ(chat.wait(), 0) << chat.err();
  EXPECT_NE(chat.err().find("aegaeon: "), std::string::npos) << chat.err(); // reported
  EXPECT_NE(chat.out().find_first_not_of(" \n"), std::string::npos) << chat.out();
}

} // namespace
} // namespace aeg::server
