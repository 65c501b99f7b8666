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
  return {{"name", s.name}, {"active", s.active}, {"total", s.total}, {"switches", list}};
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
  return s;
}

} // namespace aeg::apps
