// scripts/sim-validate: the table of real runs against a simulated one, its verdict in the exit
// status, its refusal of runs that did not see the same arrivals, and the steps it runs (with a
// stand-in for aegaeon that logs what it is asked and answers with a run made beforehand).

#include "tests/apps/cli_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace aeg::testing;
namespace fs = std::filesystem;

outcome validate(const std::string& args, const std::string& env = {}) {
  return run_shell(env + "python3 " AEG_SOURCE_DIR "/scripts/sim-validate " + args);
}

struct SimValidate : ::testing::Test {
  // One per test: ctest runs the tests side by side.
  fs::path dir = fs::path(::testing::TempDir()) /
                 ("aegaeon_sim_validate_" +
                  std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
  std::string a, other; // simulated sweeps of 2 and 3 models, seeds 1 and 2

  void SetUp() override {
    if (std::system("python3 -c '' 2>/dev/null") != 0)
      GTEST_SKIP() << "python3 is not installed";
    fs::remove_all(dir);
    fs::create_directories(dir);
    a = sweep("a.json", "1");
    other = sweep("other.json", "2");
    ASSERT_TRUE(fs::exists(a) && fs::exists(other));
  }
  void TearDown() override { fs::remove_all(dir); }

  std::string sweep(const std::string& name, const std::string& seed) {
    const std::string json = (dir / name).string();
    const auto r = run("simulate --profile " AEG_SOURCE_DIR "/profiles/h800.json --devices 2 "
                       "--prefill-devices 0 --mix qwen2.5-7b --models 2,3 --duration 300 "
                       "--policies aegaeon,request_level --seed " +
                       seed + " --json " + json);
    EXPECT_EQ(r.rc, 0) << r.output;
    return json;
  }
  // `a` with `edit` applied to its run of `policy` with `models` models, written as `name`.
  template <class Edit>
  std::string edited(const std::string& name, const std::string& policy, int models, Edit edit) {
    nlohmann::json doc;
    std::ifstream(a) >> doc;
    for (auto& r : doc["runs"])
      if (r["policy"] == policy && r["models"] == models)
        edit(r);
    const std::string path = (dir / name).string();
    std::ofstream(path) << doc.dump();
    return path;
  }
};

TEST_F(SimValidate, ComparesRunsOfTheSameArrivalsAndSaysWhetherTheAimIsMet) {
  // A run against itself: every cell the same, the aim met.
  auto r = validate("--compare " + a + "," + a + " " + a);
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("| aegaeon, 3 models |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("4 of 4 cells within 5 points"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2 of 2 cells with 20 or more switches"), std::string::npos) << r.output;

  // One cell 20 points off: marked, and the aim not met.
  const auto off = edited("off.json", "aegaeon", 2, [](nlohmann::json& run) {
    run["attainment"] = run["attainment"].get<double>() - 0.2;
  });
  r = validate("--compare " + a + " " + off);
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("**-20.0**"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 of 4 cells within 5 points"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("the aim is not met"), std::string::npos) << r.output;

  // Twice the switches in a cell that switches often: marked, and not met either.
  const auto switchy = edited("switchy.json", "aegaeon", 3, [](nlohmann::json& run) {
    run["switches"] = run["switches"].get<std::size_t>() * 2;
  });
  r = validate("--compare " + a + " " + switchy);
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("(+100%)**"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 of 2 cells with 20 or more switches"), std::string::npos) << r.output;
}

TEST_F(SimValidate, RefusesRunsThatCannotBeCompared) {
  const auto refused = [&](const std::string& args, const std::string& says) {
    const auto r = validate(args);
    EXPECT_EQ(r.rc, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << args << "\n" << r.output;
  };
  refused("--compare " + a + " " + other, "saw different arrivals");
  const auto fewer = (dir / "fewer.json").string();
  {
    nlohmann::json doc;
    std::ifstream(a) >> doc;
    doc["runs"].erase(doc["runs"].begin());
    std::ofstream(fewer) << doc.dump();
  }
  refused("--compare " + fewer + " " + a, "compare runs of the same cells");
  refused("--compare " + (dir / "none.json").string() + " " + a,
          "is not the JSON of a bench or simulate run");
  const auto lenient = (dir / "lenient.json").string();
  {
    nlohmann::json doc;
    std::ifstream(a) >> doc;
    doc["ttft_slo"] = 99;
    std::ofstream(lenient) << doc.dump();
  }
  refused("--compare " + lenient + " " + a, "compare runs of the same pool and SLOs");
  refused("--models 2,x", "is not a list of model counts");
  refused("--policies aegaon", "not among");
  refused("--profile " AEG_SOURCE_DIR "/profiles/h800.json", "is not a CPU profile");
  refused("--aegaeon " + (dir / "none").string(), "is not an executable");
}

// The whole check with a stand-in for aegaeon: the steps it runs, the step_scale it calibrates,
// the same arrivals asked of the pool and of the simulator, and a failed step's exit. The
// stand-in's pool takes 1.5 times as long per step on the calibration run's arrivals as its
// simulator does at a step_scale of 1.
TEST_F(SimValidate, RunsCalibrationProfileRealSweepsAndTheSimulatedOneOnTheSameArrivals) {
  const auto stub = dir / "aegaeon";
  std::ofstream(stub) << R"(#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(" ".join(args) + "\n")
if args[0] == os.environ.get("STUB_FAIL"):
    sys.exit("the stand-in was told to fail")
flag = lambda name: args[args.index(name) + 1] if name in args else None
if args[0] == "profile":
    with open(flag("--out"), "w") as f:
        json.dump({"name": "cpu", "shared_compute": True, "weight_layout": "cpu"}, f)
elif args[0] in ("bench", "simulate"):
    with open(os.environ["STUB_RUN"]) as f:
        doc = json.load(f)
    if args[0] == "simulate":
        with open(flag("--profile")) as f:
            scale = json.load(f).get("step_scale", 1)
    else:
        scale = 1.5 if flag("--seed") == "2" else 1
    for r in doc["runs"]:
        r["step_totals"]["seconds"] *= scale
    with open(flag("--json"), "w") as f:
        json.dump(doc, f)
)";
  fs::permissions(stub, fs::perms::owner_all);
  const auto log = dir / "calls.log";
  const std::string env = "STUB_LOG=" + log.string() + " STUB_RUN=" + a + " ";
  const std::string args = "--models 2,3 --runs 2 --duration 300 --aegaeon " + stub.string() +
                           " --out " + (dir / "out").string();
  auto r = validate(args, env);
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "comparison.md"));
  std::ifstream in(log);
  std::vector<std::string> calls;
  for (std::string line; std::getline(in, line);)
    calls.push_back(line);
  // Calibration, profile, five simulations of the calibration, two real sweeps, simulated.
  ASSERT_EQ(calls.size(), 10u) << r.output;
  EXPECT_NE(calls[0].find("bench --in-process"), std::string::npos) << calls[0];
  EXPECT_NE(calls[0].find("--seed 2"), std::string::npos) << calls[0];
  EXPECT_NE(calls[1].find("profile --backend cpu"), std::string::npos) << calls[1];
  EXPECT_NE(calls[1].find("--switches-from"), std::string::npos) << calls[1];
  EXPECT_NE(calls[1].find("--memory-mib 768"), std::string::npos) << calls[1];
  for (std::size_t i = 2; i < 7; ++i)
    for (const char* same : {"simulate --profile", "--models 5,6 ", "--policies aegaeon ",
                             "--seed 2 ", "--devices 2 ", "--duration 300 "})
      EXPECT_NE(calls[i].find(same), std::string::npos) << same << " in " << calls[i];
  for (const std::size_t i : {7u, 8u, 9u}) {
    for (const char* same :
         {"--models 2,3 ", "--duration 300 ", "--devices 2 ", "--output-mean 256 ",
          "--prompt-mean 64 ", "--rate 0.1 ", "--seed 1 ", "--ttft 1 ", "--tbt 0.1 "})
      EXPECT_NE(calls[i].find(same), std::string::npos) << same << " in " << calls[i];
  }
  EXPECT_NE(calls[7].find("--device-mib 768"), std::string::npos) << calls[7];
  const auto profile = dir / "out" / "profile.json";
  EXPECT_NE(calls[9].find("simulate --profile " + profile.string()), std::string::npos) << calls[9];
  nlohmann::json calibrated;
  std::ifstream(profile) >> calibrated;
  EXPECT_NEAR(calibrated.value("step_scale", 0.0), 1.5, 1e-9) << calibrated.dump();
  EXPECT_NE(calibrated.value("source", "").find("calibrated on"), std::string::npos);

  r = validate(args, env + "STUB_FAIL=simulate ");
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("calibration, round 1 of 5 failed (exit 1)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("the stand-in was told to fail"), std::string::npos) << r.output;
}

} // namespace
