// The `aegaeon` binary as a user runs it. Bad input ends with exit code 2 and a message that
// names the option and what it wants, before any work is done; a failure while running with 1.
// Models, where one is needed, are tiny ones written by the test.

#include "tests/apps/cli_support.hpp"

#include <gtest/gtest.h>

#include <array>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <vector>

namespace {

using namespace aeg::testing;

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

// A key file keeps the key out of `ps`: one that cannot be read, or holds no key, is refused
// before anything starts, and so is a key given twice.
TEST(Cli, AnApiKeyFileMustHoldAKey) {
  const auto dir = std::filesystem::path(::testing::TempDir());
  expect_refused("serve --port 1 --api-key-file " + (dir / "absent-key").string(),
                 "cannot read it");
  const auto blank = dir / "blank-key";
  std::ofstream(blank) << "  \nsecret\n";
  expect_refused("serve --port 1 --api-key-file " + blank.string(), "its first line holds no key");
  const auto good = dir / "good-key";
  std::ofstream(good) << "secret\n";
  expect_refused("serve --port 1 --api-key k --api-key-file " + good.string(),
                 "give the API key once");
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
  expect_refused("bench --in-process --device-mib 10", "--device-mib 10 has 10 MiB; it needs");
}

// Device memory too small for the models is refused before anything listens or loads, in the
// command's own terms, with the size that would do.
TEST(Cli, ServeSaysTheMemoryItNeeds) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_models";
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(aeg::testing::write_tiny_llama({}, (dir / "tiny.gguf").string()));
  const auto r = run("serve --port 0 --memory-mib 1 --models-dir " + dir.string());
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("--memory-mib 1 has 1 MiB; it needs"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(weights "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("give --memory-mib"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("listening"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

TEST(Cli, BenchOutputsAreCheckedBeforeTheRun) {
  expect_refused("bench --in-process --json /nonexistent/d/x.json",
                 "cannot write '/nonexistent/d/x.json'");
  expect_refused("bench --in-process --csv /", "cannot write '/'");
  expect_refused("bench --in-process --figures /dev/null/figures",
                 "cannot make the figures' directory /dev/null/figures");
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

// The simulator's setup mistakes are refused before anything runs.
TEST(Cli, SimulateRefusesWhatCannotRun) {
  expect_refused("simulate --profile /nonexistent/p.json", "cannot read the device profile");
  const std::string h800 = "simulate --profile " AEG_SOURCE_DIR "/profiles/h800.json ";
  expect_refused(h800 + "--mix gpt-5:1", "--mix: unknown synthetic model shape 'gpt-5'");
  expect_refused(h800 + "--mix qwen2.5-7b:0", "give shape:count");
  expect_refused(h800 + "--devices 4 --prefill-devices 4", "leaves no decode device");
  expect_refused("simulate --policies lottery", "--policies");
  expect_refused("simulate --rates 0", "--rates: must be greater than 0");
  expect_refused(h800 + "--json /nonexistent/d/x.json", "cannot write '/nonexistent/d/x.json'");
  const std::string bad = ::testing::TempDir() + "aegaeon_cli_bad_profile.json";
  std::ofstream(bad) << R"({"name": "G", "h2d_bytes_per_second": -1})";
  expect_refused("simulate --profile " + bad, "h2d_bytes_per_second: must be a number > 0");
  expect_refused(h800 + "--market 47 --models 16", "--models excludes --market");
  expect_refused(h800 + "--market-devices 8", "--market-devices requires --market");
  expect_refused(h800 + "--breakdown --models 16", "--models excludes --breakdown");
  expect_refused(h800 + "--setups 16x0.1", "--setups requires --breakdown");
  expect_refused(h800 + "--breakdown --setups 16y0.1", "--setups: '16y0.1': give models x rate");
  expect_refused(h800 + "--market 47 --market-mean-rate 0.011",
                 "--market: no market of 47 models has rates from 0.01 to 1.13 with mean 0.011");
  expect_refused("profile --shape gpt-5", "--shape");
  expect_refused("profile --out /nonexistent/d/p.json", "cannot write '/nonexistent/d/p.json'");
  // A pool's run to take the switch cost from is checked before anything is measured.
  const auto run_file = [](const std::string& name, const std::string& text) {
    const auto path = ::testing::TempDir() + name;
    std::ofstream(path) << text;
    return "profile --out " + ::testing::TempDir() + "aegaeon_cli_p.json --switches-from " + path;
  };
  expect_refused("profile --switches-from /nonexistent/run.json", "File does not exist");
  expect_refused(run_file("aegaeon_cli_sim_run.json", R"({"runs": []})"),
                 "is not the JSON of `aegaeon bench --in-process --json`");
  expect_refused(
      run_file("aegaeon_cli_other_run.json",
               R"({"backend": "cpu", "shape": "llama-2-7b", "runs": []})"),
      "ran cpu devices serving llama-2-7b; the profile measures cpu serving smollm2-135m");
  expect_refused(run_file("aegaeon_cli_short_run.json",
                          R"({"backend": "cpu", "shape": "smollm2-135m", "runs": [{"timeline":
                              {"instances": [{"switches": [{"n": 0, "at": 1, "to": "m",
                               "prefetched": false, "scale_up_seconds": 0.1}]}]}}]})"),
                 "logs 1 cold scale-up; at least 5 are needed");
  // A switch log of another form is refused, not read as something else.
  expect_refused(run_file("aegaeon_cli_odd_run.json",
                          R"({"backend": "cpu", "shape": "smollm2-135m", "runs": [{"timeline":
                              {"instances": [{"switches": [{"n": 0, "at": 1, "to": "m",
                               "prefetched": "false", "scale_up_seconds": "1"}]}]}}]})"),
                 "is not the JSON of `aegaeon bench --in-process --json`");
  expect_refused(run_file("aegaeon_cli_typed_run.json", R"({"backend": 1, "runs": []})"),
                 "is not the JSON of `aegaeon bench --in-process --json`");
  const auto same = ::testing::TempDir() + "aegaeon_cli_same_run.json";
  std::ofstream(same) << R"({"backend": "cpu", "shape": "smollm2-135m", "runs": []})";
  expect_refused("profile --switches-from " + same + " --out " + same,
                 "--switches-from and --out name the same file");
  std::stringstream kept;
  kept << std::ifstream(same).rdbuf();
  EXPECT_NE(kept.str().find("smollm2-135m"), std::string::npos) << kept.str();
}

TEST(Cli, GenerateSystemNeedsChat) {
  expect_refused("generate --system hi", "--system needs --chat");
}

TEST(Cli, DemoThatCannotFitFailsInsteadOfHanging) {
  expect_refused("demo --coroutines 17 --elements 16777216 --steps 1", "out of memory");
}

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
  expect_refused("generate --model " + models.dir(), "without config.json");
  const std::string key = ::testing::TempDir() + "aegaeon_cli_cluster.key";
  std::ofstream(key) << "k\n";
  expect_refused("worker --config " + topo + " --cluster-key-file " + key + " --listen 127.0.0.1",
                 "--listen: '127.0.0.1' is not HOST:PORT");
  expect_refused("worker --config " + topo + " --cluster-key-file " + key + " --listen h:70000",
                 "'h:70000' is not HOST:PORT");
  expect_refused("worker --config " + topo + " --cluster-key-file /nonexistent/key",
                 "cannot read it");
  expect_refused("worker --config " + topo + " --cluster-key-file " + key,
                 "devices[0].backnd: unknown field");
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
  const auto sim = run("simulate", cd);
  EXPECT_EQ(sim.rc, 2) << sim.output;
  EXPECT_NE(sim.output.find("run from the project root or give --profile"), std::string::npos)
      << sim.output;
  const auto r = run("serve --port 0", cd);
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("relative to the current directory"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("give --models-dir"), std::string::npos) << r.output;
  std::filesystem::remove_all(elsewhere);
}
// `plot` redraws a report's figures, beside it (named after it) or in --out; what is not a
// readable report is refused with what is wrong with it.
TEST(Cli, PlotRedrawsTheFiguresOfAReport) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_plot";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto report = dir / "runs.json";
  std::ofstream(report) << R"({"devices": 1, "backend": "cpu", "shape": "smollm2-135m",
    "ttft_slo": 5, "tbt_slo": 0.5, "runs": [{"policy": "aegaeon", "models": 2, "rate": 0.1,
    "attainment": 0.95, "latency": {"cap": 2048, "ttft": {"count": 2, "seconds": [0.1, 0.2]},
    "tbt": {"count": 3, "seconds": [0.01, 0.02, 0.03]}}, "timeline": {"seconds": 10,
    "instances": [{"name": "d0/colocated#0", "active": "b", "total": 2, "switches": [
    {"n": 0, "at": 1, "from": "", "to": "a", "scale_up_seconds": 0.2, "prefetched": false},
    {"n": 1, "at": 5, "from": "a", "to": "b", "scale_up_seconds": 0.1, "prefetched": false}]}]}}]})";
  const auto beside = run("plot " + report.string());
  ASSERT_EQ(beside.rc, 0) << beside.output;
  const std::vector<std::string> kinds = {"attainment.svg", "ttft-cdf-2models.svg",
                                          "tbt-cdf-2models.svg", "switch-cdf-2models.svg",
                                          "timeline-aegaeon-2models.svg"};
  for (const auto& k : kinds) {
    EXPECT_TRUE(std::filesystem::exists(dir / ("runs-" + k))) << k << "\n" << beside.output;
    EXPECT_NE(beside.output.find((dir / ("runs-" + k)).string()), std::string::npos);
  }
  const auto out = run("plot " + report.string() + " --out " + (dir / "figures").string());
  ASSERT_EQ(out.rc, 0) << out.output;
  for (const auto& k : kinds)
    EXPECT_TRUE(std::filesystem::exists(dir / "figures" / k)) << k << "\n" << out.output;
  std::stringstream svg;
  svg << std::ifstream(dir / "figures" / "timeline-aegaeon-2models.svg").rdbuf();
  EXPECT_EQ(svg.str().rfind("<svg", 0), 0u) << svg.str();
  EXPECT_NE(svg.str().find("d0/colocated#0"), std::string::npos) << svg.str();
  std::filesystem::remove_all(dir);
}

TEST(Cli, PlotSaysWhatItCannotRead) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "aegaeon_cli_plot_bad";
  std::filesystem::create_directories(dir);
  expect_refused("plot " + (dir / "absent.json").string(),
                 "cannot read " + (dir / "absent.json").string() + ": No such file");
  std::ofstream(dir / "cut.json") << R"({"runs": [)";
  expect_refused("plot " + (dir / "cut.json").string(), "cut.json is not JSON: parse error");
  std::ofstream(dir / "other.json") << R"({"name": "G", "h2d_bytes_per_second": 1e9})";
  expect_refused("plot " + (dir / "other.json").string(),
                 "not a report of `aegaeon bench` or `aegaeon simulate`");
  expect_refused("plot", "report is required");
  const auto help = run("plot --help");
  EXPECT_EQ(help.rc, 0);
  EXPECT_NE(help.output.find("Redraw the figures"), std::string::npos) << help.output;
  EXPECT_NE(help.output.find("--out"), std::string::npos) << help.output;
  EXPECT_NE(run("bench --help").output.find("--figures"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(Cli, ChatUrlWithoutSchemeSuggestsOne) {
  expect_refused("chat --url localhost:8350 </dev/null", "did you mean http://localhost:8350?");
}

} // namespace
