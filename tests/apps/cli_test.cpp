// The `aegaeon` binary as a user runs it. Bad input ends with exit code 2 and a message that
// names the option and what it wants, before any work is done; a failure while running with 1.
// Models, where one is needed, are tiny ones written by the test.

#include "tests/apps/child_process.hpp"
#include "tests/support/tiny_llama.hpp"

#include <gtest/gtest.h>

#include <array>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>

namespace {

struct outcome {
  int rc = -1;
  std::string output; // stdout and stderr together
};

// Runs `aegaeon ARGS` through the shell; `before` goes ahead of it ("cd DIR && ", "printf x | ").
outcome run(const std::string& args, const std::string& before = {}) {
  const std::string cmd = before + std::string(AEG_BINARY) + " " + args + " 2>&1";
  outcome out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr)
    return out;
  std::array<char, 4096> buf{};
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p))
    out.output.append(buf.data(), n);
  const int status = ::pclose(p);
  out.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// Bad usage: exit code 2 and a message with `fragment`.
void expect_refused(const std::string& args, const std::string& fragment) {
  const auto r = run(args);
  EXPECT_EQ(r.rc, 2) << args << "\n" << r.output;
  EXPECT_NE(r.output.find(fragment), std::string::npos)
      << args << ": expected '" << fragment << "' in:\n"
      << r.output;
}

TEST(Cli, MisspeltCommandIsNamed) {
  expect_refused("generat", "unknown command 'generat'; aegaeon --help lists them");
}

TEST(Cli, NumberRangesReadPlainly) {
  expect_refused("bench --url http://127.0.0.1:1 --rate 0", "--rate: must be greater than 0");
  expect_refused("bench --in-process --duration -3", "--duration: must be greater than 0");
  expect_refused("serve --grace -1", "--grace: must be at least 0");
  expect_refused("serve --port 99999", "--port: must be between 0 and 65535");
  expect_refused("generate --max-tokens abc", "--max-tokens: expects a whole number");
  expect_refused("generate --seed -1", "--seed: must be at least 0");
  expect_refused("generate --memory-mib -1", "--memory-mib: must be between 0");
}

TEST(Cli, AnEmptyApiKeyIsRefusedNotTakenForNone) {
  expect_refused("serve --api-key '' --port 1", "the API key is empty");
  expect_refused("serve --port 1 --api-key=", "--api-key");
}

TEST(Cli, BadUsageExitsWithTwo) {
  EXPECT_EQ(run("generate --temperature nan").rc, 2);
  EXPECT_EQ(run("serve --port 99999").rc, 2);
  EXPECT_EQ(run("generate --bogus").rc, 2);
  EXPECT_EQ(run("serve --api-key ' '").rc, 2);
  EXPECT_EQ(run("--help").rc, 0);
}

TEST(Cli, NanAndInfinityAreRefused) {
  expect_refused("generate --temperature nan", "--temperature: expects a finite number");
  expect_refused("chat --top-p nan", "--top-p: expects a finite number");
  expect_refused("generate --temperature inf", "--temperature: expects a finite number");
  expect_refused("chat --temperature 3", "--temperature: must be between 0 and 2");
}

TEST(Cli, BenchRefusesMeaninglessWorkloads) {
  expect_refused("bench --in-process --ttft -1", "--ttft: must be greater than 0");
  expect_refused("bench --in-process --tbt 0", "--tbt: must be greater than 0");
  expect_refused("bench --in-process --prompt-mean -5", "--prompt-mean: must be between 1");
  expect_refused("bench --in-process --prompt-mean 1e9", "--prompt-mean: must be between 1");
  expect_refused("bench --in-process --output-mean 0", "--output-mean: must be between 1");
  expect_refused("bench --in-process --models 0", "--models: must be between 1 and 64");
  expect_refused("bench --in-process --models 2,100000", "--models: must be between 1 and 64");
}

TEST(Cli, BenchSetupMistakesAreErrorsNotResults) {
  expect_refused("bench --in-process --shape gpt5", "unknown synthetic model shape 'gpt5'");
  expect_refused("bench --in-process --device-mib 10", "--device-mib 10:");
}

// Device memory too small for the models is refused before anything listens or loads, in the
// command's own terms, with the size that would do.
TEST(Cli, ServeSaysTheMemoryItNeeds) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_models";
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(aeg::testing::write_tiny_llama({}, (dir / "tiny.gguf").string()));
  const auto r = run("serve --port 0 --memory-mib 1 --models-dir " + dir.string());
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("--memory-mib 1: the models' weights"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("give --memory-mib"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("listening"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

TEST(Cli, BenchOutputsAreCheckedBeforeTheRun) {
  expect_refused("bench --in-process --json /nonexistent/d/x.json",
                 "cannot write '/nonexistent/d/x.json'");
  expect_refused("bench --in-process --csv /", "cannot write '/'");
  expect_refused("bench --url http://127.0.0.1:1 --json /nonexistent/d/x.json",
                 "cannot write '/nonexistent/d/x.json'");
}

TEST(Cli, EmptyTraceIsAnError) {
  const std::string path = ::testing::TempDir() + "aegaeon_cli_empty_trace.jsonl";
  std::ofstream(path) << "\n";
  expect_refused("bench --in-process --models 1 --trace " + path, "has no requests");
  std::ofstream(path) << R"({"arrival": 0, "model": "m", "prompt_tokens": 9000000, )"
                      << R"("output_tokens": 16})"
                      << "\n";
  expect_refused("bench --in-process --trace " + path, "longer than the");
}

TEST(Cli, GenerateSystemNeedsChat) {
  expect_refused("generate --system hi", "--system needs --chat");
}

TEST(Cli, DemoThatCannotFitFailsInsteadOfHanging) {
  expect_refused("demo --coroutines 17 --elements 16777216 --steps 1", "out of memory");
}

// A directory of the test's own, with one tiny model in it; removed when the test ends.
class tiny_model_dir {
public:
  explicit tiny_model_dir(const std::string& name)
      : dir_(std::filesystem::path(::testing::TempDir()) / name) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    ok_ = aeg::testing::write_tiny_llama({}, model()).has_value();
  }
  ~tiny_model_dir() { std::filesystem::remove_all(dir_); }
  tiny_model_dir(const tiny_model_dir&) = delete;
  tiny_model_dir& operator=(const tiny_model_dir&) = delete;

  bool ok() const { return ok_; }
  std::string dir() const { return dir_.string(); }
  std::string model() const { return (dir_ / "tiny.gguf").string(); }

private:
  std::filesystem::path dir_;
  bool ok_ = false;
};

// `aegaeon serve` of a tiny model on a free port, until it is sent SIGINT.
class serving {
public:
  explicit serving(const tiny_model_dir& models, std::vector<std::string> flags = {})
      : proc_(args(models, std::move(flags))) {
    proc_.await([&] {
      return proc_.err().find("listening on") != std::string::npos ||
             proc_.err().find("aegaeon serve:") != std::string::npos;
    });
  }
  // The port from "listening on http://HOST:PORT"; 0 when it is not listening.
  int port() const {
    const auto& e = proc_.err();
    const auto at = e.find("listening on http://");
    if (at == std::string::npos)
      return 0;
    const auto colon = e.find(' ', at + 20);
    const auto port_at = e.rfind(':', colon);
    return std::atoi(e.c_str() + port_at + 1);
  }
  aeg::testing::child& process() { return proc_; }

private:
  static std::vector<std::string> args(const tiny_model_dir& models,
                                       std::vector<std::string> flags) {
    std::vector<std::string> a = {AEG_BINARY, "serve", "--port", "0", "--models-dir", models.dir()};
    a.insert(a.end(), flags.begin(), flags.end());
    return a;
  }
  aeg::testing::child proc_;
};

TEST(Cli, BadInputExitsWithTwoInEveryCommand) {
  const std::string topo = ::testing::TempDir() + "aegaeon_cli_bad_topology.json";
  std::ofstream(topo) << R"({"devices": [{"name": "d", "backnd": "cpu"}]})";
  expect_refused("serve --config " + topo, "devices[0].backnd: unknown field");
  expect_refused("serve --config /nonexistent/topo.json", "/nonexistent/topo.json");
  expect_refused("bench --in-process --trace /nonexistent/t.jsonl", "cannot read trace");
  expect_refused("bench --url http://127.0.0.1:1 --trace /nonexistent/t.jsonl",
                 "cannot read trace");
  expect_refused("generate --model /nonexistent/m.gguf", "cannot open '/nonexistent/m.gguf'");
  tiny_model_dir models("aegaeon_cli_bad_input");
  ASSERT_TRUE(models.ok());
  expect_refused("generate --memory-mib 1 --model " + models.model(), "raise --memory-mib");
  expect_refused("chat --memory-mib 1 --model " + models.model() + " </dev/null",
                 "raise --memory-mib");
}

TEST(Cli, AFailureWhileRunningExitsWithOne) {
  const auto r = run("bench --url http://127.0.0.1:1 --duration 1");
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("cannot connect"), std::string::npos) << r.output;
}

// The default model path and models directory are relative: run from elsewhere, the message says
// so instead of sending the user to fetch a model they have.
TEST(Cli, DefaultPathsOutsideTheProjectAreSaidToBeRelative) {
  const auto elsewhere = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_elsewhere";
  std::filesystem::create_directories(elsewhere);
  const std::string cd = "cd '" + elsewhere.string() + "' && ";
  for (const std::string& cmd : {"generate", "chat </dev/null"}) {
    const auto r = run(cmd, cd);
    EXPECT_EQ(r.rc, 2) << r.output;
    EXPECT_NE(r.output.find("relative to the current directory"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("run from the project root or give --model"), std::string::npos)
        << r.output;
  }
  const auto r = run("serve --port 0", cd);
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("relative to the current directory"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("give --models-dir"), std::string::npos) << r.output;
  std::filesystem::remove_all(elsewhere);
}

TEST(Cli, GeneratePromptDashReadsStandardInput) {
  tiny_model_dir models("aegaeon_cli_prompt_stdin");
  ASSERT_TRUE(models.ok());
  const std::string gen = "generate --max-tokens 1 --model " + models.model() + " --prompt -";
  // All of it, newlines and UTF-8 included; the prompt is printed ahead of its continuation.
  const auto r = run(gen + " 2>/dev/null", "printf 'Z\303\274rich\\nzwei Zeilen\\n' | ");
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_EQ(r.output.rfind("Z\303\274rich\nzwei Zeilen", 0), 0u) << r.output;
  expect_refused(gen + " </dev/null", "standard input was empty");
  EXPECT_NE(run("generate --help").output.find("- reads it from standard input"),
            std::string::npos);
}

TEST(Cli, ChatAndBenchSayWhatAnApiKeyNeeds) {
  tiny_model_dir models("aegaeon_cli_api_key");
  ASSERT_TRUE(models.ok());
  serving server(models, {"--api-key", "right"});
  ASSERT_NE(server.port(), 0) << server.process().err();
  const std::string url = " --url http://127.0.0.1:" + std::to_string(server.port());
  const std::string no_env = "env -u AEGAEON_API_KEY ";
  for (const std::string& cmd : {"chat" + url + " </dev/null", "bench" + url + " --duration 1"}) {
    auto r = run(cmd, no_env);
    EXPECT_EQ(r.rc, 2) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find("the server needs an API key: give --api-key (or set "
                            "AEGAEON_API_KEY)"),
              std::string::npos)
        << r.output;
    r = run(cmd + " --api-key wrong", no_env);
    EXPECT_EQ(r.rc, 2) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find("the server refused the API key"), std::string::npos) << r.output;
  }
  server.process().signal(SIGINT);
  EXPECT_EQ(server.process().wait(), 0) << server.process().err();
}

TEST(Cli, ChatUrlWithoutSchemeSuggestsOne) {
  expect_refused("chat --url localhost:8350 </dev/null", "did you mean http://localhost:8350?");
}

// An IPv6 literal in the "listening on" URL is bracketed, so that the URL can be used as it is.
TEST(Cli, ServeBracketsAnIpv6HostInItsUrl) {
  tiny_model_dir models("aegaeon_cli_ipv6");
  ASSERT_TRUE(models.ok());
  serving server(models, {"--host", "::1"});
  if (server.port() == 0)
    GTEST_SKIP() << "no IPv6 loopback here: " << server.process().err();
  EXPECT_NE(server.process().err().find("listening on http://[::1]:"), std::string::npos)
      << server.process().err();
  server.process().signal(SIGINT);
  EXPECT_EQ(server.process().wait(), 0) << server.process().err();
}

// Ctrl-C in `bench --in-process`: the runs finished are reported and written, the one under way
// is abandoned, and the exit code says it was interrupted. The first run is short (the dedicated
// pool of one device refuses the second model's long request at once); the second would take
// minutes, so the signal, sent when the first run's row appears, lands within it.
TEST(Cli, BenchInterruptedReportsAndWritesTheRunsFinished) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_bench_interrupt";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "images");
  const std::string trace = (dir / "arrivals.jsonl").string();
  std::ofstream(trace)
      << R"({"arrival": 0, "model": "a", "prompt_tokens": 4, "output_tokens": 16})"
      << "\n"
      << R"({"arrival": 0, "model": "b", "prompt_tokens": 4, "output_tokens": 4000})"
      << "\n";
  const std::string json = (dir / "runs.json").string(), csv = (dir / "runs.csv").string();
  aeg::testing::child bench({AEG_BINARY, "bench", "--in-process", "--devices", "1", "--policies",
                             "dedicated,aegaeon", "--trace", trace, "--shared-dir",
                             (dir / "images").string(), "--json", json, "--csv", csv});
  ASSERT_TRUE(bench.started());
  // Its stdout is a pipe: each row must arrive as it is printed, not at exit.
  ASSERT_TRUE(bench.await([&] { return bench.out().find("dedicated ") != std::string::npos; }))
      << bench.out() << bench.err();
  bench.signal(SIGINT);
  EXPECT_EQ(bench.wait(), 130) << bench.out() << bench.err();
  EXPECT_NE(bench.err().find("interrupted; 1 of 2 runs finished"), std::string::npos)
      << bench.err();
  EXPECT_NE(bench.out().find("goodput"), std::string::npos) << bench.out();
  std::stringstream written;
  written << std::ifstream(json).rdbuf();
  EXPECT_NE(written.str().find(R"("interrupted": true)"), std::string::npos) << written.str();
  EXPECT_NE(written.str().find(R"("policy": "dedicated")"), std::string::npos) << written.str();
  EXPECT_EQ(written.str().find(R"("policy": "aegaeon")"), std::string::npos) << written.str();
  std::ifstream rows(csv);
  std::size_t lines = 0;
  for (std::string line; std::getline(rows, line);)
    ++lines;
  EXPECT_EQ(lines, 2u); // the header and the dedicated run
  std::filesystem::remove_all(dir);
}

} // namespace
