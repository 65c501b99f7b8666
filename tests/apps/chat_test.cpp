// `aegaeon chat --url` as a user runs it: the real binary on pipes, talking to a real server
// (in this process, over loopback TCP, with the real SmolLM2; skipped when it is not fetched).
// Ctrl-C is a SIGINT sent to the binary, as the terminal sends it.

#include "tests/apps/running_server.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <poll.h>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace aeg::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

const std::string model_path =
    std::string(AEG_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

// Generous: a deadline only ends a test that would otherwise hang; nothing is timed.
constexpr auto deadline = std::chrono::seconds(120);

// The binary with its stdin, stdout and stderr on pipes.
class child {
public:
  explicit child(const std::vector<std::string>& args) {
    int in[2], out[2], err[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0 || ::pipe(err) != 0)
      return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]})
      posix_spawn_file_actions_addclose(&fa, fd);
    std::vector<char*> argv;
    for (const auto& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0)
      pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    in_ = in[1];
    out_ = out[0];
    err_ = err[0];
  }
  ~child() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : {in_, out_, err_})
      if (fd >= 0)
        ::close(fd);
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;

  bool started() const { return pid_ > 0; }
  void send(const std::string& text) {
    for (std::size_t done = 0; done < text.size();) {
      const auto n = ::write(in_, text.data() + done, text.size() - done);
      if (n <= 0)
        return;
      done += static_cast<std::size_t>(n);
    }
  }
  void close_input() {
    ::close(in_);
    in_ = -1;
  }
  void signal(int sig) const { ::kill(pid_, sig); }

  // Reads its output until `done` holds or `limit` passes; whether it held.
  bool await(const std::function<bool()>& done, clock_type::duration limit = deadline) {
    const auto until = clock_type::now() + limit;
    while (!done()) {
      if (clock_type::now() > until || !read_some())
        return done();
    }
    return true;
  }
  // Whether it closed its output (it is exiting) within `limit`.
  bool await_exit(clock_type::duration limit) {
    return await([&] { return out_closed_ && err_closed_; }, limit);
  }
  // Waits for it to exit (reading what it still writes); its exit code, -1 for a signal or
  // the deadline.
  int wait() {
    await_exit(deadline);
    const auto until = clock_type::now() + deadline;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (clock_type::now() > until)
        return -1;
      ::poll(nullptr, 0, 20); // it has closed its output: exiting now
    }
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  const std::string& out() const { return stdout_; }
  const std::string& err() const { return stderr_; }

private:
  // Waits up to 100 ms for output and appends it; false once both streams are closed.
  bool read_some() {
    if (out_closed_ && err_closed_)
      return false;
    std::array<pollfd, 2> p{
        {{out_closed_ ? -1 : out_, POLLIN, 0}, {err_closed_ ? -1 : err_, POLLIN, 0}}};
    if (::poll(p.data(), p.size(), 100) < 0 && errno != EINTR)
      return false;
    std::array<char, 4096> buf{};
    const auto drain = [&](const pollfd& fd, std::string& to, bool& closed) {
      if (fd.fd < 0 || fd.revents == 0)
        return;
      const auto n = ::read(fd.fd, buf.data(), buf.size());
      if (n > 0)
        to.append(buf.data(), static_cast<std::size_t>(n));
      else
        closed = true;
    };
    drain(p[0], stdout_, out_closed_);
    drain(p[1], stderr_, err_closed_);
    return true;
  }

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  bool out_closed_ = false, err_closed_ = false, exited_ = false;
  std::string stdout_, stderr_;
};

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

} // namespace
} // namespace aeg::server
