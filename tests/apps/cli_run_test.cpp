// The `aegaeon` binary as a user runs it, where the command runs its actors (a model loaded, a
// server answering, a benchmark under way): these pass messages through CAF.

#include "tests/apps/cli_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace aeg::testing;

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
  // The server reads its key from a file (a key on the command line shows in `ps`).
  const auto key_file = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_key";
  std::ofstream(key_file) << "right\n";
  serving server(models, {"--api-key-file", key_file.string()});
  ASSERT_NE(server.port(), 0) << server.process().err();
  const std::string url = " --url http://127.0.0.1:" + std::to_string(server.port());
  const std::string no_env = "env -u AEGAEON_API_KEY ";
  const auto right = run("chat" + url + " --api-key right </dev/null", no_env);
  EXPECT_EQ(right.rc, 0) << right.output;
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

// One server serves a model of every family (tests/models/fixtures: tiny random llama, Llama 3,
// Qwen2 and Qwen3 models, each as a GGUF and as a Hugging Face folder) beside a tiny llama,
// found in its models directory, and each answers a conversation over HTTP in its own chat
// format; `generate --chat` runs each in-process too.
TEST(Cli, EveryModelFamilyAnswersOverHttpAndInProcess) {
  tiny_model_dir models("aegaeon_cli_families");
  ASSERT_TRUE(models.ok());
  std::vector<std::pair<std::string, std::string>> served; // name, file or folder
  for (const std::string f : {"llama", "llama3", "qwen2", "qwen3"}) {
    const auto fixtures = std::filesystem::path(AEG_SOURCE_DIR) / "tests/models/fixtures";
    std::filesystem::copy(fixtures / (f + "-tiny.gguf"), models.dir());
    std::filesystem::copy(fixtures / (f + "-tiny-hf"),
                          std::filesystem::path(models.dir()) / (f + "-tiny-hf"));
    served.emplace_back(f + "-tiny", f + "-tiny.gguf");
    served.emplace_back(f + "-tiny-hf", f + "-tiny-hf");
  }
  serving server(models);
  ASSERT_NE(server.port(), 0) << server.process().err();
  const std::string url = " --url http://127.0.0.1:" + std::to_string(server.port());
  for (const auto& [f, path] : served) {
    const auto chat = run("chat" + url + " --model " + f + " --max-tokens 4", "echo hi | ");
    EXPECT_EQ(chat.rc, 0) << f << ": " << chat.output;
    const auto gen =
        run("generate --chat --max-tokens 4 --prompt hi --model " + models.dir() + "/" + path);
    EXPECT_EQ(gen.rc, 0) << f << ": " << gen.output;
  }
  server.process().signal(SIGINT);
  EXPECT_EQ(server.process().wait(), 0) << server.process().err();
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
  // The figures of the runs finished, beside the JSON and named after it.
  for (const char* f : {"runs-attainment.svg", "runs-ttft-cdf-2models.svg",
                        "runs-tbt-cdf-2models.svg", "runs-timeline-dedicated-2models.svg"})
    EXPECT_TRUE(std::filesystem::exists(dir / f)) << f << "\n" << bench.out();
  EXPECT_FALSE(std::filesystem::exists(dir / "runs-timeline-aegaeon-2models.svg"));
  std::stringstream timeline;
  timeline << std::ifstream(dir / "runs-timeline-dedicated-2models.svg").rdbuf();
  EXPECT_NE(timeline.str().find("class=\"lane\""), std::string::npos) << timeline.str();
  std::filesystem::remove_all(dir);
}

// Ctrl-C in `bench --url`: the rates finished are reported and written, the one under way is
// abandoned (its connections closed), the server keeps serving, and the exit code says so. The
// first rate is short; the second would send thousands of requests, so the signal, sent when the
// first rate's row appears, lands within it.
// A small sweep in virtual time writes its table, CSV, JSON and figure; the published profile
// is found from the source tree.
TEST(Cli, SimulateSweepsAndWritesItsReports) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_simulate";
  std::filesystem::create_directories(dir);
  const std::string json = (dir / "s.json").string(), csv = (dir / "s.csv").string(),
                    svg = (dir / "s.svg").string();
  const auto r = run("simulate --profile " AEG_SOURCE_DIR "/profiles/h800.json --devices 3 "
                     "--prefill-devices 1 --models 2,4 --duration 60 --policies aegaeon,dedicated "
                     "--json " +
                     json + " --csv " + csv + " --svg " + svg);
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("goodput"), std::string::npos) << r.output;
  std::stringstream written;
  written << std::ifstream(json).rdbuf();
  const auto doc = written.str();
  EXPECT_NE(doc.find(R"("profile": "H800")"), std::string::npos) << doc;
  EXPECT_NE(doc.find(R"("policy": "dedicated")"), std::string::npos) << doc;
  std::ifstream rows(csv);
  std::size_t lines = 0;
  for (std::string line; std::getline(rows, line);)
    ++lines;
  EXPECT_EQ(lines, 5u); // the header and 2 counts x 2 policies
  std::stringstream figure;
  figure << std::ifstream(svg).rdbuf();
  EXPECT_NE(figure.str().find("<svg"), std::string::npos);
  EXPECT_NE(figure.str().find("aegaeon"), std::string::npos);
  EXPECT_NE(figure.str().find("90%"), std::string::npos);
  // Every figure, beside the JSON.
  for (const char* f : {"s-attainment.svg", "s-ttft-cdf-4models.svg", "s-switch-cdf-4models.svg",
                        "s-timeline-aegaeon-2models.svg"})
    EXPECT_TRUE(std::filesystem::exists(dir / f)) << f << "\n" << r.output;
  // Swept over SLO scales, the goodput is the strictest scale still at 90%.
  const auto slo = run("simulate --profile " AEG_SOURCE_DIR "/profiles/h800.json --devices 2 "
                       "--prefill-devices 0 --models 2 --slo-scales 1,0.5 --duration 30 "
                       "--policies aegaeon");
  ASSERT_EQ(slo.rc, 0) << slo.output;
  EXPECT_NE(slo.output.find("the smallest slo_scale at >= 90%"), std::string::npos) << slo.output;
  std::filesystem::remove_all(dir);
}

// A profile measured on a CPU device takes the fixed cost of a switch from a pool's run: the
// median of the cold scale-ups it logged (prefetched ones do not count), less the copy.
TEST(Cli, ProfileTakesTheSwitchCostFromAPoolsColdScaleUps) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_profile";
  std::filesystem::create_directories(dir);
  nlohmann::json switches = nlohmann::json::array();
  for (const double s : {90.0, 110.0, 100.0, 100.0, 500.0, 1000.0}) // cold ones' median: 100
    switches.push_back({{"n", switches.size()},
                        {"at", switches.size()},
                        {"to", "m"},
                        {"prefetched", s == 1000.0},
                        {"scale_up_seconds", s}});
  const nlohmann::json bench_run = {
      {"backend", "cpu"},
      {"shape", "smollm2-135m"},
      {"runs", {{{"timeline", {{"instances", {{{"switches", switches}}}}}}}}}};
  std::ofstream(dir / "run.json") << bench_run.dump();
  const auto out = (dir / "p.json").string();
  const auto r = run("profile --backend cpu --shape smollm2-135m --rounds 1 --switches-from " +
                     (dir / "run.json").string() + " --out " + out);
  ASSERT_EQ(r.rc, 0) << r.output;
  const auto p = nlohmann::json::parse(std::ifstream(out));
  // The median, 100 s, less the engine's own scale-up of 100-odd MB (positive, and far under
  // the 10 s between the median and its neighbours: counting the prefetched one, or taking the
  // mean, would give 110 s or more).
  EXPECT_LT(p.at("switch_seconds").get<double>(), 100.0);
  EXPECT_GT(p.at("switch_seconds").get<double>(), 90.0);
  EXPECT_NE(p.at("source").get<std::string>().find("fixed switch cost"), std::string::npos);
  EXPECT_NE(r.output.find("a pool's switch costs"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

// The production scenario: for each policy, the fewest devices at 90% attainment found by
// bisection, which the probes it reports bear out (it reaches 90%, one device fewer does not).
TEST(Cli, SimulateMarketFindsTheFewestDevicesEachPolicyNeeds) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_market";
  std::filesystem::create_directories(dir);
  const std::string json = (dir / "m.json").string();
  const auto r = run("simulate --profile " AEG_SOURCE_DIR "/profiles/h800.json --market 6 "
                     "--market-devices 8 --market-max-rate 0.5 --market-mean-rate 0.1 "
                     "--duration 120 --policies aegaeon,dedicated --json " +
                     json);
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("the fewest devices at 90% attainment"), std::string::npos) << r.output;
  const auto doc = nlohmann::json::parse(std::ifstream(json));
  EXPECT_EQ(doc["market"]["rates"].size(), 6u);
  EXPECT_DOUBLE_EQ(doc["market"]["rates"][0].get<double>(), 0.5);
  for (const char* policy : {"aegaeon", "dedicated"}) {
    ASSERT_TRUE(doc["fewest_devices"].contains(policy)) << doc["fewest_devices"];
    const auto& fewest = doc["fewest_devices"][policy];
    ASSERT_TRUE(fewest.is_number()) << policy << ": none within 8 devices\n" << r.output;
    const auto n = fewest.get<std::size_t>();
    bool reached = false, below = n == 1;
    for (const auto& p : doc["probes"]) {
      if (p["policy"] != policy)
        continue;
      if (p["devices"] == n)
        reached = p["attainment"].get<double>() >= 0.9;
      if (p["devices"] == n - 1)
        below = p["attainment"].get<double>() < 0.9;
    }
    EXPECT_TRUE(reached && below) << policy << " at " << n << "\n" << r.output;
  }
  std::filesystem::remove_all(dir);
}

TEST(Cli, BenchUrlInterruptedReportsAndWritesTheRatesFinished) {
  tiny_model_dir models("aegaeon_cli_bench_url_interrupt");
  ASSERT_TRUE(models.ok());
  serving server(models);
  ASSERT_NE(server.port(), 0) << server.process().err();
  const std::string json = models.dir() + "/runs.json";
  aeg::testing::child bench({AEG_BINARY, "bench", "--url",
                             "http://127.0.0.1:" + std::to_string(server.port()), "--rate",
                             "0.5,500", "--duration", "2", "--output-mean", "8", "--json", json});
  ASSERT_TRUE(bench.started());
  ASSERT_TRUE(bench.await([&] { return bench.out().find("rate 0.500") != std::string::npos; }))
      << bench.out() << bench.err();
  bench.signal(SIGINT);
  EXPECT_EQ(bench.wait(), 130) << bench.out() << bench.err();
  EXPECT_NE(bench.err().find("interrupted; 1 of 2 rates finished"), std::string::npos)
      << bench.err();
  std::stringstream written;
  written << std::ifstream(json).rdbuf();
  EXPECT_NE(written.str().find(R"("interrupted": true)"), std::string::npos) << written.str();
  EXPECT_NE(written.str().find(R"("rate_per_model": 0.5)"), std::string::npos) << written.str();
  EXPECT_EQ(written.str().find(R"("rate_per_model": 500)"), std::string::npos) << written.str();
  // Its attainment against the rate, beside the JSON (the server's switches are not known here).
  EXPECT_TRUE(std::filesystem::exists(models.dir() + "/runs-attainment.svg")) << bench.out();
  server.process().signal(SIGINT);
  EXPECT_EQ(server.process().wait(), 0) << server.process().err();
}

} // namespace
