#include "apps/aegaeon/report_figures.hpp"

#include "apps/aegaeon/figure.hpp"
#include "apps/aegaeon/run_summary.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

namespace aeg::apps {

namespace {

using json = nlohmann::json;

// One run of a report, with what it carries.
struct cell {
  run_result r;
  bool latency = false, timeline = false;
};

latency_samples samples_from_json(const json& j) {
  latency_samples s;
  s.seconds = j.at("seconds").get<std::vector<double>>();
  std::sort(s.seconds.begin(), s.seconds.end());
  s.count = std::max(j.value("count", std::size_t{0}), s.seconds.size());
  return s;
}

// A run of `bench --in-process` or `simulate` (throws json::exception where a field is off).
cell cell_from_json(const json& j) {
  cell c;
  c.r.policy = j.at("policy").get<std::string>();
  c.r.models = j.at("models").get<std::size_t>();
  c.r.rate = j.value("rate", 0.0);
  c.r.slo_scale = j.value("slo_scale", 1.0);
  c.r.attainment = j.at("attainment").get<double>();
  if (j.contains("latency")) {
    c.r.ttft = samples_from_json(j["latency"].at("ttft"));
    c.r.tbt = samples_from_json(j["latency"].at("tbt"));
    c.latency = true;
  }
  if (j.contains("timeline")) {
    c.r.timeline_seconds = j["timeline"].at("seconds").get<double>();
    for (const auto& i : j["timeline"].at("instances"))
      c.r.instances.push_back(switches_from_json(i));
    c.timeline = true;
  }
  return c;
}

// A rate of `bench --url`: its summary of all models, as one series.
cell url_cell_from_json(const json& j, std::size_t models) {
  cell c;
  c.r.policy = "all models";
  c.r.models = models;
  c.r.rate = j.at("rate_per_model").get<double>();
  for (const auto& s : j.at("summaries"))
    if (s.at("model").get<std::string>() == "all")
      c.r.attainment = s.at("attainment").get<double>();
  return c;
}

result<std::vector<cell>> cells_of(const json& doc) {
  if (!doc.is_object() || !doc.contains("runs") || !doc["runs"].is_array())
    return fail(errc::invalid_argument,
                "it is not a report of `aegaeon bench` or `aegaeon simulate` (no \"runs\" list); "
                "give a file their --json wrote");
  const bool url = doc.contains("url");
  const std::size_t models = url && doc.value("models", json::array()).is_array()
                                 ? doc.value("models", json::array()).size()
                                 : 0;
  std::vector<cell> cells;
  for (std::size_t i = 0; i < doc["runs"].size(); ++i) {
    try {
      cells.push_back(url ? url_cell_from_json(doc["runs"][i], models)
                          : cell_from_json(doc["runs"][i]));
    } catch (const json::exception& e) {
      return fail(errc::invalid_argument,
                  fmt::format("run {} of \"runs\" is not a run of a bench or simulate report: {}",
                              i + 1, e.what()));
    }
  }
  return cells;
}

// What a report varies: which of models, rate and SLO scale take more than one value.
struct sweep {
  bool models = false, rate = false, slo = false;

  static sweep of(const std::vector<cell>& cells) {
    std::set<double> m, r, s;
    for (const auto& c : cells) {
      m.insert(static_cast<double>(c.r.models));
      r.insert(c.r.rate);
      s.insert(c.r.slo_scale);
    }
    return {m.size() > 1, r.size() > 1, s.size() > 1};
  }
  // The x axis: the one variable varied; models when none or several are.
  int axis() const {
    if (rate && !models && !slo)
      return 1;
    if (slo && !models && !rate)
      return 2;
    return 0;
  }
  static double x_of(int axis, const run_result& r) {
    return axis == 0 ? static_cast<double>(r.models) : axis == 1 ? r.rate : r.slo_scale;
  }
};

// "4models-rate0.5": the runs that differ only in policy share it.
std::string group_of(const sweep& s, const run_result& r) {
  std::string g = fmt::format("{}models", r.models);
  if (s.rate)
    g += fmt::format("-rate{:g}", r.rate);
  if (s.slo)
    g += fmt::format("-slo{:g}", r.slo_scale);
  return g;
}

// "4 models, 0.5 req/s per model, SLO x0.5": the same, for a title.
std::string group_title(const sweep& s, const run_result& r) {
  std::string g = fmt::format("{} model{}", r.models, r.models == 1 ? "" : "s");
  if (s.rate)
    g += fmt::format(", {:g} req/s per model", r.rate);
  if (s.slo)
    g += fmt::format(", SLO x{:g}", r.slo_scale);
  return g;
}

std::string attainment_title(const json& doc) {
  if (doc.contains("url"))
    return fmt::format("SLO attainment of {}", doc.value("url", std::string{}));
  if (doc.contains("profile"))
    return fmt::format("SLO attainment on {} {} ({})", doc.value("devices", 0),
                       doc.value("profile", std::string{}), doc.value("dataset", std::string{}));
  return fmt::format("SLO attainment on {} {} devices ({})", doc.value("devices", 0),
                     doc.value("backend", std::string{}), doc.value("shape", std::string{}));
}

figure_file attainment_figure(const json& doc, const std::vector<cell>& cells) {
  const auto s = sweep::of(cells);
  const int axis = s.axis();
  // A series per policy; per policy and the other varied settings where several vary.
  auto series_name = [&](const run_result& r) {
    std::string n = r.policy;
    if (axis == 0 && s.rate)
      n += fmt::format(", {:g} req/s", r.rate);
    if (axis == 0 && s.slo)
      n += fmt::format(", SLO x{:g}", r.slo_scale);
    return n;
  };
  std::vector<chart_series> series;
  for (const auto& c : cells) {
    const std::string name = series_name(c.r);
    auto it = std::find_if(series.begin(), series.end(),
                           [&](const chart_series& x) { return x.name == name; });
    if (it == series.end())
      it = series.insert(series.end(), chart_series{name, {}, std::nullopt});
    const double x = sweep::x_of(axis, c.r);
    it->points.emplace_back(x, 100 * c.r.attainment);
    // The goodput: the most load, or the strictest SLO scale, still at 90%.
    if (c.r.attainment >= 0.9 &&
        (!it->marker_x || (axis == 2 ? x < *it->marker_x : x > *it->marker_x)))
      it->marker_x = x;
  }
  for (auto& x : series)
    std::sort(x.points.begin(), x.points.end());
  const char* label = axis == 0   ? "models"
                      : axis == 1 ? "requests per second per model"
                                  : "SLO scale (x the base TTFT and TBT)";
  return {"attainment.svg",
          line_chart_svg(attainment_title(doc), label, "SLO attainment (%)", series)};
}

std::string sample_note(const latency_samples& s) {
  return s.seconds.size() < s.count ? fmt::format("{} quantiles of {}", s.seconds.size(), s.count)
                                    : fmt::format("n={}", s.count);
}

// A run's active models as bars: from each switch to the next, lighter while the weights came
// in; grey where switches were not seen (before the first one kept, or in a gap of numbers).
timeline_lane lane_of(const instance_switches& s, double end) {
  timeline_lane lane{fmt::format("{} ({} switch{})", s.name, s.total, s.total == 1 ? "" : "es"),
                     {}};
  const auto& w = s.switches;
  if (w.empty()) {
    if (!s.active.empty() || s.total > 0)
      lane.bars.push_back({0, end, s.total == 0 ? s.active : std::string{}, 0});
    return lane;
  }
  if (w.front().n > 0)
    lane.bars.push_back({std::min(0.0, w.front().at), w.front().at, {}, 0});
  for (std::size_t k = 0; k < w.size(); ++k) {
    const bool last = k + 1 == w.size();
    const double until = last ? end : w[k + 1].at;
    const bool gap = !last && w[k + 1].n != w[k].n + 1;
    const double loading = w[k].prefetched             ? 0
                           : w[k].scale_up_seconds < 0 ? until - w[k].at
                                                       : w[k].scale_up_seconds;
    lane.bars.push_back({w[k].at, until, gap ? std::string{} : w[k].to, gap ? 0 : loading});
  }
  return lane;
}

void add_cell_figures(const json& doc, const sweep& s, const std::vector<const cell*>& group,
                      std::vector<figure_file>& out) {
  const auto& first = group.front()->r;
  const std::string g = group_of(s, first), title = group_title(s, first);
  const double ttft_slo = doc.value("ttft_slo", 0.0) * first.slo_scale;
  const double tbt_slo = doc.value("tbt_slo", 0.0) * first.slo_scale;
  std::vector<cdf_series> ttft, tbt, scale_up;
  for (const cell* c : group) {
    if (c->latency) {
      ttft.push_back({c->r.policy, c->r.ttft.seconds, sample_note(c->r.ttft)});
      tbt.push_back({c->r.policy, c->r.tbt.seconds, sample_note(c->r.tbt)});
    }
    if (!c->timeline)
      continue;
    cdf_series up{c->r.policy, {}, {}};
    std::size_t total = 0;
    for (const auto& i : c->r.instances) {
      total += i.total;
      for (const auto& w : i.switches)
        if (w.scale_up_seconds >= 0)
          up.samples.push_back(w.scale_up_seconds);
    }
    up.note = up.samples.size() < total ? fmt::format("{} of {} timed", up.samples.size(), total)
                                        : fmt::format("n={}", up.samples.size());
    if (!up.samples.empty())
      scale_up.push_back(std::move(up));
  }
  auto slo = [](double v) { return v > 0 ? std::optional<double>(v) : std::nullopt; };
  if (!ttft.empty()) {
    out.push_back({"ttft-cdf-" + g + ".svg",
                   cdf_chart_svg("Time to first token, " + title, "time to first token (s)",
                                 "share of requests (%)", ttft, slo(ttft_slo))});
    out.push_back({"tbt-cdf-" + g + ".svg",
                   cdf_chart_svg("Time between tokens, " + title, "time between tokens (s)",
                                 "share of token gaps (%)", tbt, slo(tbt_slo))});
  }
  if (!scale_up.empty())
    out.push_back({"switch-cdf-" + g + ".svg",
                   cdf_chart_svg("Switch latency (a new model's weights all in), " + title,
                                 "scale-up time (s)", "share of switches (%)", scale_up)});
}

// A file name's part from a policy's name: letters, digits, '.', '_' and '-' kept.
std::string file_part(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      c = '_';
  return s;
}

} // namespace

result<std::vector<figure_file>> report_figures(const json& doc) {
  AEG_TRY_ASSIGN(auto cells, cells_of(doc));
  std::vector<figure_file> out{attainment_figure(doc, cells)};
  const auto s = sweep::of(cells);
  std::map<std::string, std::vector<const cell*>> groups; // by group, runs in report order
  std::vector<std::string> order;
  for (const auto& c : cells) {
    const auto g = group_of(s, c.r);
    if (groups[g].empty())
      order.push_back(g);
    groups[g].push_back(&c);
  }
  for (const auto& g : order)
    add_cell_figures(doc, s, groups[g], out);
  for (const auto& c : cells)
    if (c.timeline && !c.r.instances.empty()) {
      std::vector<timeline_lane> lanes;
      for (const auto& i : c.r.instances)
        lanes.push_back(lane_of(i, c.r.timeline_seconds));
      out.push_back(
          {"timeline-" + file_part(c.r.policy) + "-" + group_of(s, c.r) + ".svg",
           timeline_svg("Active model per instance: " + c.r.policy + ", " + group_title(s, c.r),
                        lanes, c.r.timeline_seconds)});
    }
  return out;
}

figure_place figure_place::of(const std::string& json_path, const std::string& figures_dir) {
  if (!figures_dir.empty())
    return {figures_dir, ""};
  if (json_path.empty())
    return {};
  const std::filesystem::path p(json_path);
  return {p.has_parent_path() ? p.parent_path().string() : ".", p.stem().string() + "-"};
}

result<void> figure_place::prepare() const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    return fail(errc::unavailable,
                fmt::format("cannot make the figures' directory {}: {}", dir,
                            ec ? ec.message() : std::string("it is not a directory")));
  return {};
}

result<std::vector<std::string>> write_figures(const std::vector<figure_file>& figures,
                                               const figure_place& place) {
  AEG_TRY(place.prepare());
  std::vector<std::string> written;
  for (const auto& f : figures) {
    const auto path = (std::filesystem::path(place.dir) / (place.prefix + f.name)).string();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << f.svg;
    out.close();
    if (!out)
      return fail(errc::unavailable,
                  fmt::format("cannot write the figure {}: {}", path, std::strerror(errno)));
    written.push_back(path);
  }
  return written;
}

int draw_report_figures(const json& doc, const figure_place& place, const std::string& who) {
  if (!place.wanted())
    return 0;
  auto figures = report_figures(doc);
  if (!figures) {
    fmt::print(stderr, "{}: no figures: {}\n", who, figures.error().message);
    return 1;
  }
  auto written = write_figures(*figures, place);
  if (!written) {
    fmt::print(stderr, "{}: {}\n", who, written.error().message);
    return 1;
  }
  fmt::print("{} figure{} in {}: {}{}\n", written->size(), written->size() == 1 ? "" : "s",
             place.dir, place.prefix + figures->front().name,
             written->size() > 1 ? fmt::format(" and {} more", written->size() - 1) : "");
  return 0;
}

} // namespace aeg::apps
