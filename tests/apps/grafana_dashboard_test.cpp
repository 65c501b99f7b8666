// The Grafana dashboard in docs/grafana/ against the metrics page the server renders: every series
// a panel or a template variable queries must be one `metrics_registry::render` writes.

#include "apps/server/metrics.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace aeg::server {
namespace {

using json = nlohmann::json;

const std::string dashboard_path = std::string(AEG_SOURCE_DIR) + "/docs/grafana/aegaeon.json";

json read_dashboard() {
  std::ifstream in(dashboard_path);
  EXPECT_TRUE(in.good()) << "cannot open " << dashboard_path;
  return json::parse(in, nullptr, false);
}

// Every PromQL text of the dashboard: panels' (and rows' nested panels') `expr`, template
// variables' `query` and `definition`.
void collect_queries(const json& j, std::vector<std::string>& out) {
  if (j.is_object()) {
    for (const auto& [key, value] : j.items()) {
      if ((key == "expr" || key == "query" || key == "definition") && value.is_string())
        out.push_back(value.get<std::string>());
      else
        collect_queries(value, out);
    }
  } else if (j.is_array()) {
    for (const auto& e : j)
      collect_queries(e, out);
  }
}

// The metric names (identifiers with the project's prefix) a PromQL text names.
std::set<std::string> metric_names(const std::vector<std::string>& queries) {
  static const std::regex name(R"((^|[^A-Za-z0-9_:])(aegaeon_[A-Za-z0-9_:]*))");
  std::set<std::string> names;
  for (const auto& q : queries)
    for (auto it = std::sregex_iterator(q.begin(), q.end(), name); it != std::sregex_iterator();
         ++it)
      names.insert((*it)[2].str());
  return names;
}

// What a Prometheus text page holds: each family's type and each sample's name.
struct exposition {
  std::map<std::string, std::string> types;
  std::set<std::string> samples;

  explicit exposition(const std::string& text) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("# TYPE ", 0) == 0) {
        std::istringstream words(line.substr(7));
        std::string family, type;
        words >> family >> type;
        types[family] = type;
      } else if (!line.empty() && line[0] != '#') {
        samples.insert(line.substr(0, line.find_first_of("{ ")));
      }
    }
  }

  // The family a series belongs to: a histogram's _bucket, _sum and _count belong to it.
  std::string family_of(const std::string& series) const {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s = suffix;
      if (series.size() > s.size() && series.compare(series.size() - s.size(), s.size(), s) == 0) {
        const std::string base = series.substr(0, series.size() - s.size());
        if (auto t = types.find(base); t != types.end() && t->second == "histogram")
          return base;
      }
    }
    return series;
  }

  // Names that are no series of this page: unknown, or a histogram's bare name (Prometheus
  // stores only its _bucket, _sum and _count).
  std::vector<std::string> unknown(const std::set<std::string>& names) const {
    std::vector<std::string> out;
    for (const auto& n : names)
      if (samples.count(n) == 0 || types.count(family_of(n)) == 0)
        out.push_back(n);
    return out;
  }
};

// A metrics page with a sample of every series: a declared model with requests finished, an
// error answer, an instance serving a model and one that did not answer.
std::string rendered_page() {
  metrics_registry r;
  r.declare("chat");
  r.started("chat");
  r.first_token("chat", 0.3);
  r.between_tokens("chat", 0.02);
  r.finished("chat", "stop", 12, 4);
  r.refused(429);

  actors::pool_metrics pool;
  pool.totals["chat"] = {.requests = 1, .tokens = 4, .tokens_on_time = 3, .attainment_sum = 0.8};
  pool.queued_by_model["chat"] = 1;
  pool.in_flight_by_model["chat"] = 2;
  pool.rejected = 1;
  pool.instances_alive = 1;

  actors::instance_stats s;
  s.active = "chat";
  s.kv_bytes_used = std::size_t{1} << 20;
  s.running = 1;
  s.switches = 2;
  s.prefetches = 1;
  s.ready = true;
  std::vector<instance_report> instances = {{"node-a/cpu0/colocated#0", s},
                                            {"node-b/cpu0/colocated#0", std::nullopt}};
  return r.render(pool, instances);
}

TEST(GrafanaDashboard, IsAGrafanaDashboardWithQueries) {
  const json d = read_dashboard();
  ASSERT_FALSE(d.is_discarded()) << dashboard_path << " is not JSON";
  EXPECT_TRUE(d.contains("panels") && d["panels"].is_array() && !d["panels"].empty());
  EXPECT_TRUE(d.contains("schemaVersion"));
  std::vector<std::string> queries;
  collect_queries(d, queries);
  EXPECT_GE(metric_names(queries).size(), 10U);
}

TEST(GrafanaDashboard, EverySeriesItQueriesIsOneTheServerRenders) {
  const json d = read_dashboard();
  ASSERT_FALSE(d.is_discarded()) << dashboard_path << " is not JSON";
  std::vector<std::string> queries;
  collect_queries(d, queries);
  const exposition page(rendered_page());
  for (const auto& n : page.unknown(metric_names(queries)))
    ADD_FAILURE() << dashboard_path << " queries " << n
                  << ", which apps/server/metrics.cpp does not render";
}

TEST(GrafanaDashboard, TheCheckCatchesSeriesThatDoNotExist) {
  const exposition page(rendered_page());
  const auto names = metric_names(
      {"rate(aegaeon_no_such_total[5m])", "rate(aegaeon_time_to_first_token_seconds[5m])",
       "rate(aegaeon_requests_total_bucket[5m])",
       "histogram_quantile(0.9, rate(aegaeon_time_between_tokens_seconds_bucket[5m]))"});
  EXPECT_EQ(page.unknown(names),
            (std::vector<std::string>{"aegaeon_no_such_total", "aegaeon_requests_total_bucket",
                                      "aegaeon_time_to_first_token_seconds"}));
}

} // namespace
} // namespace aeg::server
