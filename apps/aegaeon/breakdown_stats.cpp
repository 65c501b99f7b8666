#include "apps/aegaeon/breakdown_stats.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace aeg::apps {

namespace {

double rounded(double v) {
  return std::round(v * 1e6) / 1e6;
} // microseconds

nlohmann::json parts_json(const latency_breakdown& b) {
  nlohmann::json j = nlohmann::json::object();
  const auto parts = b.parts();
  for (std::size_t k = 0; k < parts.size(); ++k)
    j[part_names()[k]] = rounded(parts[k]);
  return j;
}

nlohmann::json samples_json(const latency_samples& s) {
  nlohmann::json values = nlohmann::json::array();
  for (const double v : s.seconds)
    values.push_back(rounded(v));
  return {{"count", s.count}, {"seconds", std::move(values)}};
}

} // namespace

const std::vector<std::string>& part_names() {
  static const std::vector<std::string> names = {"prefill waiting",  "prefill execution",
                                                 "decode waiting",   "decode execution",
                                                 "control overhead", "data overhead"};
  return names;
}

latency_breakdown breakdown_of(const actors::request_metrics& m) {
  const auto& s = m.service;
  latency_breakdown b;
  // Its first token ends the prefill phase; one that made none spent it all there.
  const double first = m.token_times.empty() ? m.end_seconds : m.token_times.front();
  b.prefill_execute = s.prefill_execute;
  b.decode_execute = s.decode_execute;
  b.control = s.prefill_held + s.decode_held;
  b.data = s.prefill_kv_wait + s.decode_kv_wait;
  b.prefill_wait = first - s.prefill_execute - s.prefill_held - s.prefill_kv_wait;
  b.decode_wait = (m.end_seconds - first) - s.decode_execute - s.decode_held - s.decode_kv_wait;
  return b;
}

double expected_active_models(std::size_t models, double rate, double service_seconds) {
  return static_cast<double>(models) * (1 - std::exp(-rate * service_seconds));
}

std::vector<std::pair<double, std::size_t>>
active_models_over_time(std::vector<service_span> spans) {
  // +1 when a model's first request starts, -1 when its last one ends; at one instant the ends
  // go first, so back-to-back requests keep a model active without a blip.
  struct change {
    double at;
    int delta;
    std::string model;
  };
  std::vector<change> changes;
  for (auto& s : spans) {
    changes.push_back({s.start, +1, s.model});
    changes.push_back({std::max(s.end, s.start), -1, std::move(s.model)});
  }
  std::sort(changes.begin(), changes.end(), [](const change& a, const change& b) {
    return std::tie(a.at, a.delta) < std::tie(b.at, b.delta);
  });
  std::map<std::string, std::size_t> in_service;
  std::vector<std::pair<double, std::size_t>> out{{0.0, 0}};
  std::size_t active = 0;
  for (const auto& c : changes) {
    auto& n = in_service[c.model];
    if (c.delta > 0)
      active += n++ == 0 ? 1 : 0;
    else
      active -= --n == 0 ? 1 : 0;
    if (out.back().first == c.at)
      out.back().second = active;
    else
      out.emplace_back(c.at, active);
  }
  // A point only where the count changes (an end and a start at one instant leave it as it was).
  std::vector<std::pair<double, std::size_t>> changed;
  for (const auto& p : out)
    if (changed.empty() || p.second != changed.back().second)
      changed.push_back(p);
  return changed;
}

double time_average(const std::vector<std::pair<double, std::size_t>>& steps, double until) {
  if (!(until > 0))
    return 0;
  double area = 0;
  for (std::size_t k = 0; k < steps.size() && steps[k].first < until; ++k) {
    const double next = k + 1 < steps.size() ? std::min(steps[k + 1].first, until) : until;
    area += static_cast<double>(steps[k].second) * (next - std::max(steps[k].first, 0.0));
  }
  return area / until;
}

breakdown_cell breakdown_cell_of(const run_result& run,
                                 const std::vector<actors::request_metrics>& finished,
                                 const std::vector<double>& arrivals,
                                 const std::map<std::string, std::string>& shapes,
                                 double duration) {
  breakdown_cell c;
  c.policy = run.policy;
  c.models = run.models;
  c.rate = run.rate;
  c.attainment = run.attainment;
  std::vector<double> kv_sync;
  std::vector<service_span> spans;
  double service_sum = 0;
  for (const auto& m : finished) {
    if (m.end_seconds <= 0)
      continue; // ended at once (refused): no latency to divide
    const auto b = breakdown_of(m);
    const auto parts = b.parts();
    auto sum = c.mean_seconds.parts(), share = c.mean_shares.parts();
    for (std::size_t k = 0; k < parts.size(); ++k) {
      sum[k] += parts[k];
      share[k] += parts[k] / m.end_seconds;
    }
    c.mean_seconds = {sum[0], sum[1], sum[2], sum[3], sum[4], sum[5]};
    c.mean_shares = {share[0], share[1], share[2], share[3], share[4], share[5]};
    c.most_negative_wait = std::min({c.most_negative_wait, b.prefill_wait, b.decode_wait});
    c.prefill_control += m.service.prefill_held;
    c.prefill_data += m.service.prefill_kv_wait;
    kv_sync.push_back(b.data);
    service_sum += m.end_seconds;
    const double start = m.id < arrivals.size() ? arrivals[m.id] : 0;
    spans.push_back({m.model, start, start + m.end_seconds});
    ++c.requests;
  }
  if (c.requests > 0) {
    const double n = static_cast<double>(c.requests);
    auto mean = [n](latency_breakdown b) {
      const auto p = b.parts();
      return latency_breakdown{p[0] / n, p[1] / n, p[2] / n, p[3] / n, p[4] / n, p[5] / n};
    };
    c.mean_seconds = mean(c.mean_seconds);
    c.mean_shares = mean(c.mean_shares);
    c.service_seconds = service_sum / n;
    c.prefill_control /= n;
    c.prefill_data /= n;
  }
  c.kv_sync = sample_latencies(std::move(kv_sync));
  std::map<std::string, std::vector<double>> ups;
  for (const auto& inst : run.instances)
    for (const auto& s : inst.switches) {
      if (s.scale_up_seconds < 0)
        continue; // still coming in when the run ended
      const auto shape = shapes.find(s.to);
      ups[shape == shapes.end() ? s.to : shape->second].push_back(s.scale_up_seconds);
      ++c.switches_timed;
      c.prefetched += s.prefetched ? 1 : 0;
    }
  for (auto& [shape, v] : ups)
    c.scale_ups[shape] = sample_latencies(std::move(v));
  c.active = active_models_over_time(std::move(spans));
  c.active_mean = time_average(c.active, duration);
  c.expected_active = expected_active_models(c.models, c.rate, c.service_seconds);
  return c;
}

std::string breakdown_csv(const std::vector<breakdown_cell>& cells) {
  std::string out = "policy,models,rate,requests,attainment";
  for (const char* what : {"seconds", "share"})
    for (const auto& name : part_names()) {
      std::string col = name;
      std::replace(col.begin(), col.end(), ' ', '_');
      out += "," + col + "_" + what;
    }
  out += ",switches_timed,prefetched,service_seconds,active_mean,expected_active\n";
  for (const auto& c : cells) {
    out +=
        fmt::format("{},{},{:g},{},{:.4f}", c.policy, c.models, c.rate, c.requests, c.attainment);
    for (const auto& b : {c.mean_seconds, c.mean_shares})
      for (const double v : b.parts())
        out += fmt::format(",{:.6f}", v);
    out += fmt::format(",{},{},{:.4f},{:.4f},{:.4f}\n", c.switches_timed, c.prefetched,
                       c.service_seconds, c.active_mean, c.expected_active);
  }
  return out;
}

nlohmann::json to_json(const breakdown_cell& c) {
  nlohmann::json ups = nlohmann::json::object();
  for (const auto& [shape, s] : c.scale_ups)
    ups[shape] = samples_json(s);
  nlohmann::json active = nlohmann::json::array();
  for (const auto& [at, n] : c.active)
    active.push_back({rounded(at), n});
  return {{"policy", c.policy},
          {"models", c.models},
          {"rate", c.rate},
          {"requests", c.requests},
          {"attainment", c.attainment},
          {"mean_seconds", parts_json(c.mean_seconds)},
          {"mean_shares", parts_json(c.mean_shares)},
          {"most_negative_wait", rounded(c.most_negative_wait)},
          {"prefill_control_seconds", rounded(c.prefill_control)},
          {"prefill_data_seconds", rounded(c.prefill_data)},
          {"scale_up_seconds", std::move(ups)},
          {"switches_timed", c.switches_timed},
          {"prefetched", c.prefetched},
          {"kv_sync_seconds", samples_json(c.kv_sync)},
          {"active_models",
           {{"mean", rounded(c.active_mean)},
            {"service_seconds", rounded(c.service_seconds)},
            {"expected", rounded(c.expected_active)},
            {"series", std::move(active)}}}};
}

} // namespace aeg::apps
