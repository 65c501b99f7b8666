// A report's figures from its JSON, as bench writes them and plot redraws them; the switch
// history they are drawn from; the latency samples' cap.

#include "apps/aegaeon/report_figures.hpp"
#include "apps/aegaeon/run_summary.hpp"
#include "apps/aegaeon/switch_history.hpp"
#include "tests/apps/svg_check.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

namespace {

using namespace aeg::apps;
namespace actors = aeg::actors;
using aeg::testing::count_of;
using aeg::testing::well_formed;

actors::switch_record record(double ago, std::string from, std::string to, double up) {
  return {ago, std::move(from), std::move(to), up, false};
}

// A run of `policy` on `models` models: 3 requests' first tokens, 4 gaps, 2 instances.
run_result run_of(const std::string& policy, std::size_t models, double attainment) {
  run_result r;
  r.policy = policy;
  r.models = models;
  r.rate = 0.1;
  r.attainment = attainment;
  r.ttft = sample_latencies({0.3, 0.1, 0.2});
  r.tbt = sample_latencies({0.05, 0.04, 0.06, 0.05});
  r.timeline_seconds = 10;
  for (int i = 0; i < 2; ++i) {
    actors::instance_stats s;
    s.switches = 2;
    s.active = "model-1";
    s.recent_switches = {record(8, "", "model-0", 0.5), record(4, "model-0", "model-1", 0.25)};
    instance_switches seen;
    seen.name = "d" + std::to_string(i) + "/colocated#" + std::to_string(i);
    seen.merge(s, 10);
    r.instances.push_back(seen);
  }
  return r;
}

nlohmann::json report_of(const std::vector<run_result>& runs) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& r : runs)
    list.push_back(to_json(r));
  return {{"devices", 2},    {"backend", "cpu"}, {"shape", "smollm2-135m"},
          {"ttft_slo", 0.5}, {"tbt_slo", 0.1},   {"runs", list}};
}

std::map<std::string, std::string> by_name(const std::vector<figure_file>& files) {
  std::map<std::string, std::string> m;
  for (const auto& f : files)
    m[f.name] = f.svg;
  return m;
}

TEST(ReportFigures, DrawsEveryKindFromABenchReport) {
  const auto doc = report_of({run_of("aegaeon", 2, 1.0), run_of("fcfs", 2, 0.95),
                              run_of("aegaeon", 4, 0.92), run_of("fcfs", 4, 0.5)});
  auto files = report_figures(doc);
  ASSERT_TRUE(files) << files.error().message;
  const auto f = by_name(*files);
  for (const char* name :
       {"attainment.svg", "ttft-cdf-2models.svg", "tbt-cdf-2models.svg", "switch-cdf-2models.svg",
        "ttft-cdf-4models.svg", "timeline-aegaeon-2models.svg", "timeline-fcfs-4models.svg"})
    ASSERT_TRUE(f.contains(name)) << name;
  EXPECT_EQ(files->size(), 1u + 2 * 3 + 4); // attainment, 3 CDFs per count, a timeline per run
  for (const auto& [name, svg] : f)
    EXPECT_TRUE(well_formed(svg)) << name << "\n" << svg;
  const auto& attainment = f.at("attainment.svg");
  EXPECT_NE(attainment.find(">90%</text>"), std::string::npos);
  EXPECT_EQ(count_of(attainment, "class=\"goodput\""), 2u); // aegaeon at 4, fcfs at 2
  EXPECT_NE(attainment.find("SLO attainment on 2 cpu devices (smollm2-135m)"), std::string::npos);
  // One rise per sample: 3 requests per policy, 4 gaps, 2 timed switches on each instance.
  EXPECT_EQ(count_of(f.at("ttft-cdf-2models.svg"), "V"), 2u * 3);
  EXPECT_EQ(count_of(f.at("tbt-cdf-2models.svg"), "V"), 2u * 4);
  EXPECT_EQ(count_of(f.at("switch-cdf-2models.svg"), "V"), 2u * 4);
  EXPECT_NE(f.at("ttft-cdf-2models.svg").find("SLO 0.5 s"), std::string::npos);
  const auto& timeline = f.at("timeline-aegaeon-2models.svg");
  EXPECT_EQ(count_of(timeline, "class=\"lane\""), 2u);
  EXPECT_EQ(count_of(timeline, "class=\"bar\""), 4u);
  EXPECT_NE(timeline.find("d1/colocated#1 (2 switches)"), std::string::npos);
}

TEST(ReportFigures, SweptRatesAndOldReportsGiveTheAttainmentFigure) {
  nlohmann::json doc = report_of({run_of("aegaeon", 2, 1.0), run_of("aegaeon", 2, 0.8)});
  doc["runs"][1]["rate"] = 0.5;
  for (auto& r : doc["runs"]) { // as written before runs carried latencies and switches
    r.erase("latency");
    r.erase("timeline");
  }
  auto files = report_figures(doc);
  ASSERT_TRUE(files) << files.error().message;
  ASSERT_EQ(files->size(), 1u);
  EXPECT_NE(files->front().svg.find("requests per second per model"), std::string::npos);
  // bench --url: a summary of all models per rate.
  const nlohmann::json url = {
      {"url", "http://127.0.0.1:8000"},
      {"models", {"a", "b"}},
      {"runs",
       {{{"rate_per_model", 0.5}, {"summaries", {{{"model", "all"}, {"attainment", 0.97}}}}},
        {{"rate_per_model", 2.0}, {"summaries", {{{"model", "all"}, {"attainment", 0.4}}}}}}}};
  auto served = report_figures(url);
  ASSERT_TRUE(served) << served.error().message;
  ASSERT_EQ(served->size(), 1u);
  EXPECT_EQ(count_of(served->front().svg, "class=\"goodput\""), 1u);
}

TEST(ReportFigures, SaysWhatIsNotAReport) {
  for (const auto& doc :
       {nlohmann::json::array(), nlohmann::json{{"devices", 2}}, nlohmann::json{{"runs", 3}}}) {
    auto r = report_figures(doc);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, aeg::errc::invalid_argument);
    EXPECT_NE(r.error().message.find("not a report of `aegaeon bench` or `aegaeon simulate`"),
              std::string::npos)
        << r.error().message;
  }
  auto odd = report_figures({{"runs", {{{"policy", 3}}}}});
  ASSERT_FALSE(odd);
  EXPECT_NE(odd.error().message.find("run 1 of \"runs\""), std::string::npos)
      << odd.error().message;
}

TEST(SwitchHistory, LooksMergeByNumberAndTimeFromTheRunsStart) {
  instance_switches seen;
  actors::instance_stats first;
  first.switches = 2;
  first.active = "b";
  first.recent_switches = {record(3, "", "a", 0.5), record(1, "a", "b", -1)};
  seen.merge(first, 5); // taken 5 s after the start
  ASSERT_EQ(seen.switches.size(), 2u);
  EXPECT_DOUBLE_EQ(seen.switches[0].at, 2);
  EXPECT_DOUBLE_EQ(seen.switches[1].at, 4);
  EXPECT_EQ(seen.switches[1].scale_up_seconds, -1);
  // Later: the second switch's weights are in, two more switches, the first dropped from the log.
  actors::instance_stats later;
  later.switches = 4;
  later.active = "a";
  later.recent_switches = {record(5, "a", "b", 0.25), record(2, "b", "c", 0.1),
                           record(1, "c", "a", 0.2)};
  seen.merge(later, 9);
  ASSERT_EQ(seen.switches.size(), 4u);
  EXPECT_EQ(seen.switches[1].scale_up_seconds, 0.25);
  EXPECT_DOUBLE_EQ(seen.switches[1].at, 4); // known already: its time stays
  EXPECT_DOUBLE_EQ(seen.switches[3].at, 8);
  EXPECT_EQ(seen.total, 4u);
  EXPECT_EQ(seen.active, "a");
  EXPECT_EQ(seen.missing(), 0u);
  // A look that comes late, after switches dropped unseen: a gap in the numbers.
  actors::instance_stats gap;
  gap.switches = 10;
  gap.recent_switches = {record(1, "x", "y", 0.1)};
  seen.merge(gap, 20);
  EXPECT_EQ(seen.switches.back().n, 9u);
  EXPECT_EQ(seen.missing(), 5u);
  const auto back = switches_from_json(to_json(seen));
  ASSERT_EQ(back.switches.size(), seen.switches.size());
  EXPECT_EQ(back.total, 10u);
  EXPECT_EQ(back.switches[2].to, "c");
}

TEST(SwitchHistory, StepCountersComeFromTheLatestLookWhateverOrderLooksArriveIn) {
  actors::instance_stats early, late;
  early.steps = 10;
  early.step_seconds = 0.5;
  late.steps = 30;
  late.steps_repeated = 12;
  late.step_seconds = 1.25;
  late.decode_steps = 28;
  late.decode_sequences = 70;
  late.decode_step_seconds = 1.0;
  instance_switches seen;
  seen.merge(late, 3);
  seen.merge(early, 1); // an older answer that came later
  EXPECT_EQ(seen.stepped.steps, 30u);
  EXPECT_DOUBLE_EQ(seen.stepped.seconds, 1.25);
  step_totals run;
  run += seen.stepped;
  run += step_totals::of(early);
  EXPECT_EQ(run.steps, 40u);
  EXPECT_DOUBLE_EQ(run.seconds, 1.75);
  const auto j = to_json(seen.stepped);
  EXPECT_NEAR(j.at("decode_mean_seconds").get<double>(), 1.0 / 28, 1e-6); // to the microsecond
  EXPECT_DOUBLE_EQ(j.at("decode_mean_batch").get<double>(), 2.5);
  const auto back = switches_from_json(to_json(seen)).stepped;
  EXPECT_EQ(back.repeated, 12u);
  EXPECT_EQ(back.decode_sequences, 70u);
  EXPECT_DOUBLE_EQ(back.decode_seconds, 1.0);
  EXPECT_EQ(to_json(step_totals{}).at("decode_mean_seconds").get<double>(), 0.0); // no step yet
  auto old = to_json(seen);
  old.erase("step_totals"); // a run written before steps were counted
  EXPECT_EQ(switches_from_json(old).stepped.steps, 0u);
}

TEST(LatencySamples, KeepEveryValueUpToTheCapThenQuantiles) {
  const auto few = sample_latencies({3, 1, 2});
  EXPECT_EQ(few.seconds, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(few.count, 3u);
  std::vector<double> many;
  for (int i = 0; i < 10000; ++i)
    many.push_back(static_cast<double>(9999 - i));
  const auto capped = sample_latencies(many, 100);
  ASSERT_EQ(capped.seconds.size(), 100u);
  EXPECT_EQ(capped.count, 10000u);
  EXPECT_TRUE(std::is_sorted(capped.seconds.begin(), capped.seconds.end()));
  EXPECT_EQ(capped.seconds.front(), 50); // nearest rank at 0.5 %
  EXPECT_EQ(capped.seconds.back(), 9950);
}

} // namespace
