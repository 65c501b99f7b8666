#include "apps/aegaeon/run_summary.hpp"

#include "apps/aegaeon/trace.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace aeg::apps {

namespace {

nlohmann::json to_json(const latency_samples& s) {
  nlohmann::json seconds = nlohmann::json::array();
  for (const double v : s.seconds)
    seconds.push_back(std::round(v * 1e6) / 1e6); // microseconds: a shorter file
  return {{"count", s.count}, {"seconds", seconds}};
}

// Puts the elements of ranks [first, last) (ascending) of v[lo, hi) where a sort would put them,
// without sorting the rest: an hour's token gaps are millions, and a capped sample needs 2,048.
void select_ranks(std::vector<double>& v, std::size_t lo, std::size_t hi, const std::size_t* first,
                  const std::size_t* last) {
  while (first != last && lo < hi) {
    const std::size_t* mid = first + (last - first) / 2;
    const auto at = [&](std::size_t i) { return v.begin() + static_cast<std::ptrdiff_t>(i); };
    std::nth_element(at(lo), at(*mid), at(hi));
    // Ranks equal to *mid are in place now; the others lie wholly on one side of it.
    select_ranks(v, lo, *mid, first, std::lower_bound(first, mid, *mid));
    first = std::upper_bound(mid, last, *mid);
    lo = *mid + 1;
  }
}

} // namespace

latency_samples sample_latencies(std::vector<double> values, std::size_t cap) {
  latency_samples s;
  s.count = values.size();
  if (values.size() <= cap || cap == 0) {
    std::sort(values.begin(), values.end());
    s.seconds = std::move(values);
    return s;
  }
  std::vector<std::size_t> ranks(cap);
  for (std::size_t i = 0; i < cap; ++i) {
    const double p = (static_cast<double>(i) + 0.5) / static_cast<double>(cap);
    ranks[i] = static_cast<std::size_t>(p * static_cast<double>(values.size()));
  }
  select_ranks(values, 0, values.size(), ranks.data(), ranks.data() + cap);
  s.seconds.reserve(cap);
  for (const std::size_t r : ranks)
    s.seconds.push_back(values[r]);
  return s;
}

void count_arrivals(run_result& r, std::span<const actors::trace_request> trace) {
  r.requests = trace.size();
  r.tokens_expected = r.prompt_tokens = 0;
  for (const auto& t : trace) {
    r.tokens_expected += t.output_tokens;
    r.prompt_tokens += t.prompt_tokens;
  }
}

void summarize(run_result& res, const actors::pool_metrics& m) {
  std::vector<double> ttfts, tbts, per_request;
  for (const auto& f : m.finished) {
    ++res.finished;
    if ((f.reason == actors::finish_reason::error ||
         f.reason == actors::finish_reason::unavailable) &&
        res.failed++ == 0)
      res.first_failure = f.message;
    res.tokens_on_time += f.tokens_on_time;
    per_request.push_back(f.time_attainment());
    if (!f.token_times.empty())
      ttfts.push_back(f.ttft());
    for (std::size_t k = 1; k < f.token_times.size(); ++k)
      tbts.push_back(f.token_times[k] - f.token_times[k - 1]);
  }
  for (std::size_t i = 0; i < res.rejected; ++i)
    per_request.push_back(0);
  res.token_attainment = res.tokens_expected == 0 ? 1.0
                                                  : static_cast<double>(res.tokens_on_time) /
                                                        static_cast<double>(res.tokens_expected);
  res.attainment = per_request.empty()
                       ? 1.0
                       : std::accumulate(per_request.begin(), per_request.end(), 0.0) /
                             static_cast<double>(per_request.size());
  res.ttft_p50 = percentile(ttfts, 0.5);
  res.ttft_p99 = percentile(ttfts, 0.99);
  res.tbt_p99 = percentile(tbts, 0.99);
  res.ttft = sample_latencies(std::move(ttfts));
  res.tbt = sample_latencies(std::move(tbts));
}

std::string table_header() {
  return fmt::format("{:>19} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "policy", "attainment",
                     "tokens", "TTFT p50", "TTFT p99", "TBT p99", "switches", "rejected");
}

std::string table_row(const run_result& r) {
  return fmt::format("{:>19} {:>9.1f}% {:>8.1f}% {:>8.2f}s {:>8.2f}s {:>8.3f}s {:>9} {:>9}\n",
                     r.policy, 100 * r.attainment, 100 * r.token_attainment, r.ttft_p50, r.ttft_p99,
                     r.tbt_p99, r.switches, r.rejected);
}

std::string table_notes(const run_result& r) {
  std::string out;
  if (r.rejected > 0)
    out += fmt::format("{:>19} {} rejected; the first because: {}\n", "", r.rejected,
                       r.first_rejection);
  if (r.failed > 0)
    out += fmt::format("{:>19} {} failed; the first because: {}\n", "", r.failed, r.first_failure);
  return out;
}

std::string csv_header() {
  return "policy,models,rate,slo_scale,requests,finished,rejected,failed,tokens_expected,"
         "tokens_on_time,attainment,token_attainment,ttft_p50,ttft_p99,tbt_p99,switches,"
         "seconds\n";
}

std::string csv_row(const run_result& r) {
  return fmt::format("{},{},{},{},{},{},{},{},{},{},{:.4f},{:.4f},{:.3f},{:.3f},{:.4f},{},{:.1f}\n",
                     r.policy, r.models, r.rate, r.slo_scale, r.requests, r.finished, r.rejected,
                     r.failed, r.tokens_expected, r.tokens_on_time, r.attainment,
                     r.token_attainment, r.ttft_p50, r.ttft_p99, r.tbt_p99, r.switches, r.seconds);
}

nlohmann::json to_json(const run_result& r) {
  nlohmann::json instances = nlohmann::json::array();
  for (const auto& i : r.instances)
    instances.push_back(to_json(i));
  return {{"policy", r.policy},
          {"models", r.models},
          {"rate", r.rate},
          {"slo_scale", r.slo_scale},
          {"requests", r.requests},
          {"finished", r.finished},
          {"rejected", r.rejected},
          {"failed", r.failed},
          {"tokens_expected", r.tokens_expected},
          {"prompt_tokens", r.prompt_tokens},
          {"tokens_on_time", r.tokens_on_time},
          {"attainment", r.attainment},
          {"token_attainment", r.token_attainment},
          {"ttft_p50", r.ttft_p50},
          {"ttft_p99", r.ttft_p99},
          {"tbt_p99", r.tbt_p99},
          {"switches", r.switches},
          {"steps", r.stepped.steps},
          {"steps_repeated", r.stepped.repeated},
          {"step_totals", to_json(r.stepped)},
          {"seconds", r.seconds},
          {"first_rejection", r.first_rejection},
          {"first_failure", r.first_failure},
          {"latency",
           {{"cap", latency_sample_cap}, {"ttft", to_json(r.ttft)}, {"tbt", to_json(r.tbt)}}},
          {"timeline", {{"seconds", r.timeline_seconds}, {"instances", instances}}}};
}

std::size_t goodput_models(const std::vector<run_result>& runs, const std::string& policy,
                           double at_least) {
  std::size_t best = 0;
  for (const auto& r : runs)
    if (r.policy == policy && r.attainment >= at_least)
      best = std::max(best, r.models);
  return best;
}

} // namespace aeg::apps
