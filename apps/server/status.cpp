#include "apps/server/status.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>

namespace aeg::server {

namespace {

using json = nlohmann::ordered_json;

std::size_t of(const std::map<std::string, std::size_t>& by_model, const std::string& model) {
  const auto it = by_model.find(model);
  return it == by_model.end() ? 0 : it->second;
}

// Null for a model none of whose requests has finished in the pool yet.
json attainment(const actors::pool_metrics& pool, const std::string& model) {
  const auto it = pool.totals.find(model);
  if (it == pool.totals.end() || it->second.requests == 0)
    return nullptr;
  return it->second.attainment_sum / static_cast<double>(it->second.requests);
}

json model_entry(const std::string& name, const model_counts& c, const actors::pool_metrics& pool,
                 double per_second) {
  const auto totals = pool.totals.find(name);
  return json{
      {"name", name},
      {"queued", of(pool.queued_by_model, name)},
      {"running", c.num_running()},
      {"in_flight", of(pool.in_flight_by_model, name)},
      {"finished", c.num_finished()},
      {"finished_by_reason", c.finished},
      {"prompt_tokens", c.prompt_tokens},
      {"tokens_generated", c.tokens_received},
      {"tokens_per_second", per_second},
      {"slo_attainment", attainment(pool, name)},
      {"tokens_on_time", totals == pool.totals.end() ? 0 : totals->second.tokens_on_time},
  };
}

json optional_name(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}

json switch_entry(const std::string& instance, const actors::switch_record& s) {
  return json{
      {"instance", instance},
      {"seconds_ago", s.seconds_ago},
      {"from", optional_name(s.from)},
      {"to", s.to},
      {"scale_up_seconds", s.scale_up_seconds < 0 ? json(nullptr) : json(s.scale_up_seconds)},
      {"prefetched", s.prefetched}};
}

// A switch of the last minute and the instance it happened on.
struct recent_switch {
  const std::string* instance;
  const actors::switch_record* record;
  std::size_t order; ///< among all listed, to keep each instance's own order on ties
};

// An instance's card; its recent switches go to `switches` too.
json instance_entry(const instance_report& r, bool remote, std::vector<recent_switch>& switches) {
  // "device/role#i" here, "node/device/role#i" on a front end.
  const auto slash = r.name.find('/');
  const std::string first = r.name.substr(0, slash);
  std::string device = first;
  if (remote && slash != std::string::npos) {
    const auto rest = r.name.substr(slash + 1);
    device = rest.substr(0, rest.find('/'));
  }
  json e{{"name", r.name},
         {"node", remote ? json(first) : json(nullptr)},
         {"device", device},
         {"alive", r.stats.has_value()}};
  if (!r.stats)
    return e;
  const auto& s = *r.stats;
  // An instance keeps its latest switches only: when some were dropped, the list is complete
  // back to its oldest alone.
  double history = status_page::switch_horizon_seconds;
  if (s.recent_switches.size() < s.switches && !s.recent_switches.empty())
    history = std::min(history, s.recent_switches.front().seconds_ago);
  std::size_t last_minute = 0;
  for (const auto& sw : s.recent_switches)
    if (sw.seconds_ago <= status_page::switch_horizon_seconds) {
      ++last_minute;
      switches.push_back({&r.name, &sw, switches.size()});
    }
  e.update(json{{"ready", s.ready},
                {"active", optional_name(s.active)},
                {"staged", optional_name(s.staged)},
                {"running", s.running},
                {"waiting", s.waiting},
                {"kv_bytes_used", s.kv_bytes_used},
                {"host_kv_bytes_used", s.host_kv_bytes_used},
                {"kv_fragmentation", s.kv_fragmentation},
                {"tokens_generated", s.tokens_generated},
                {"steps", s.steps},
                {"switches", s.switches},
                {"prefetches", s.prefetches},
                {"switches_last_minute", last_minute},
                {"switch_history_seconds", history},
                {"scale_up_seconds_total", s.scale_up_seconds}});
  return e;
}

} // namespace

std::string status_page::render(const status_inputs& in, const actors::pool_metrics& pool,
                                const std::vector<instance_report>& instances,
                                token_rates::clock::time_point now) {
  token_rates::counts tokens;
  for (const auto& name : in.model_names) {
    const auto it = in.counts.find(name);
    tokens[name] = it == in.counts.end() ? 0 : it->second.tokens_received;
  }
  const auto rates = rates_.sample(now, tokens);
  json models = json::array();
  json totals{{"queued", 0},
              {"running", 0},
              {"in_flight", 0},
              {"finished", 0},
              {"tokens_generated", 0},
              {"tokens_per_second", 0.0},
              {"rejected", pool.rejected},
              {"instances_alive", pool.instances_alive}};
  for (const auto& name : in.model_names) {
    const auto it = in.counts.find(name);
    auto m = model_entry(name, it == in.counts.end() ? model_counts{} : it->second, pool,
                         rates.per_second.at(name));
    for (const char* k : {"queued", "running", "in_flight", "finished", "tokens_generated"})
      totals[k] = totals[k].get<std::size_t>() + m[k].get<std::size_t>();
    totals["tokens_per_second"] =
        totals["tokens_per_second"].get<double>() + m["tokens_per_second"].get<double>();
    models.push_back(std::move(m));
  }
  std::vector<recent_switch> recent;
  json cards = json::array();
  for (const auto& r : instances)
    cards.push_back(instance_entry(r, in.remote, recent));
  // Oldest first across instances, as each instance lists its own.
  std::sort(recent.begin(), recent.end(), [](const recent_switch& a, const recent_switch& b) {
    return a.record->seconds_ago != b.record->seconds_ago
               ? a.record->seconds_ago > b.record->seconds_ago
               : a.order < b.order;
  });
  json switches = json::array();
  for (const auto& r : recent)
    switches.push_back(switch_entry(*r.instance, *r.record));
  return json{{"object", "aegaeon.status"},
              {"status", in.shutting_down ? "shutting_down" : "ok"},
              {"uptime_seconds", in.uptime_seconds},
              {"rate_window_seconds", rates.window_seconds},
              {"switch_horizon_seconds", switch_horizon_seconds},
              {"totals", std::move(totals)},
              {"models", std::move(models)},
              {"instances", std::move(cards)},
              {"switches", std::move(switches)}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace aeg::server
