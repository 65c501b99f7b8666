#include "apps/aegaeon/switch_history.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace aeg::apps {

namespace {

double microseconds(double seconds) {
  return std::round(seconds * 1e6) / 1e6;
}

} // namespace

step_totals& step_totals::operator+=(const step_totals& o) {
  steps += o.steps;
  repeated += o.repeated;
  seconds += o.seconds;
  decode_steps += o.decode_steps;
  decode_sequences += o.decode_sequences;
  decode_seconds += o.decode_seconds;
  return *this;
}

step_totals step_totals::of(const actors::instance_stats& stats) {
  return {stats.steps,        stats.steps_repeated,   stats.step_seconds,
          stats.decode_steps, stats.decode_sequences, stats.decode_step_seconds};
}

nlohmann::json to_json(const step_totals& t) {
  const auto per_step = [&](double v) {
    return t.decode_steps > 0 ? v / static_cast<double>(t.decode_steps) : 0.0;
  };
  return {{"steps", t.steps},
          {"repeated", t.repeated},
          {"seconds", microseconds(t.seconds)},
          {"decode_steps", t.decode_steps},
          {"decode_sequences", t.decode_sequences},
          {"decode_seconds", microseconds(t.decode_seconds)},
          {"decode_mean_seconds", microseconds(per_step(t.decode_seconds))},
          {"decode_mean_batch", per_step(static_cast<double>(t.decode_sequences))}};
}

void instance_switches::merge(const actors::instance_stats& stats, double now) {
  const auto& recent = stats.recent_switches;
  // The log holds the last switches made: the first kept is number `switches - kept`.
  const std::size_t first = stats.switches >= recent.size() ? stats.switches - recent.size() : 0;
  for (std::size_t k = 0; k < recent.size(); ++k) {
    const auto& r = recent[k];
    const std::size_t n = first + k;
    auto at = std::lower_bound(switches.begin(), switches.end(), n,
                               [](const timed_switch& s, std::size_t v) { return s.n < v; });
    if (at != switches.end() && at->n == n) {
      if (at->scale_up_seconds < 0)
        at->scale_up_seconds = r.scale_up_seconds;
      continue;
    }
    switches.insert(at, {n, now - r.seconds_ago, r.from, r.to, r.scale_up_seconds, r.prefetched});
  }
  if (stats.switches >= total) {
    total = stats.switches;
    active = stats.active;
  }
  if (stats.steps >= stepped.steps)
    stepped = step_totals::of(stats);
}

nlohmann::json to_json(const instance_switches& s) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& w : s.switches)
    list.push_back({{"n", w.n},
                    {"at", microseconds(w.at)},
                    {"from", w.from},
                    {"to", w.to},
                    {"scale_up_seconds", microseconds(w.scale_up_seconds)},
                    {"prefetched", w.prefetched}});
  return {{"name", s.name},
          {"active", s.active},
          {"total", s.total},
          {"switches", list},
          {"step_totals", to_json(s.stepped)}};
}

instance_switches switches_from_json(const nlohmann::json& j) {
  instance_switches s;
  s.name = j.value("name", std::string{});
  s.active = j.value("active", std::string{});
  for (const auto& w : j.value("switches", nlohmann::json::array()))
    s.switches.push_back({w.at("n").get<std::size_t>(), w.at("at").get<double>(),
                          w.value("from", std::string{}), w.at("to").get<std::string>(),
                          w.value("scale_up_seconds", -1.0), w.value("prefetched", false)});
  std::sort(s.switches.begin(), s.switches.end(),
            [](const timed_switch& a, const timed_switch& b) { return a.n < b.n; });
  s.total = std::max(j.value("total", std::size_t{0}), s.switches.size());
  // Runs written before steps were counted have none.
  if (const auto t = j.find("step_totals"); t != j.end())
    s.stepped = {t->at("steps").get<std::size_t>(),
                 t->at("repeated").get<std::size_t>(),
                 t->at("seconds").get<double>(),
                 t->at("decode_steps").get<std::size_t>(),
                 t->at("decode_sequences").get<std::size_t>(),
                 t->at("decode_seconds").get<double>()};
  return s;
}

} // namespace aeg::apps
