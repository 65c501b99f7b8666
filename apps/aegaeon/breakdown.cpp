#include "apps/aegaeon/breakdown.hpp"

#include "apps/aegaeon/breakdown_stats.hpp"
#include "apps/aegaeon/figure.hpp"
#include "apps/aegaeon/interrupt.hpp"
#include "apps/aegaeon/run_summary.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

namespace aeg::apps {

namespace {

struct setup {
  std::size_t models = 0;
  double rate = 0;
};

// "16x0.1": 16 models at 0.1 requests per second each.
result<setup> parse_setup(const std::string& text) {
  const auto x = text.find('x');
  auto bad = [&] {
    return fail(errc::invalid_argument,
                "--setups: '" + text + "': give models x rate, as 16x0.1 (16 models at 0.1 req/s)");
  };
  if (x == std::string::npos || x == 0)
    return bad();
  try {
    std::size_t used = 0;
    const std::string n = text.substr(0, x), r = text.substr(x + 1);
    setup s{std::stoul(n, &used), 0};
    if (used != n.size() || s.models == 0 || s.models > 100000)
      return bad();
    s.rate = std::stod(r, &used);
    if (used != r.size() || !(s.rate > 0 && s.rate <= 1000))
      return bad();
    return s;
  } catch (const std::exception&) {
    return bad();
  }
}

std::string setup_name(const breakdown_cell& c) {
  return fmt::format("{}x{:g}", c.models, c.rate);
}

std::string row(const breakdown_cell& c) {
  std::string out =
      fmt::format("{:>20} {:>8} {:6.1f}%", c.policy, setup_name(c), 100 * c.attainment);
  for (const double v : c.mean_shares.parts())
    out += fmt::format(" {:6.1f}%", 100 * v);
  const auto kv_p99 = c.kv_sync.seconds.empty() ? 0.0 : c.kv_sync.seconds.back();
  out += fmt::format("  {:>5}/{:<5} {:7.3f}  {:6.2f} {:6.2f}\n", c.prefetched, c.switches_timed,
                     kv_p99, c.active_mean, c.expected_active);
  return out;
}

// Fig. 14's stacked bars, the CDFs of Fig. 15, and Fig. 4's active models per cell.
std::vector<figure_file> figures_of(const std::vector<breakdown_cell>& cells,
                                    const std::string& device) {
  std::vector<figure_file> out;
  const bool policies = std::any_of(
      cells.begin(), cells.end(), [&](const auto& c) { return c.policy != cells.front().policy; });
  std::vector<stacked_bar> bars;
  std::map<std::string, std::vector<cdf_series>> kv;
  for (const auto& c : cells) {
    const std::string name = (policies ? c.policy + " " : "") + setup_name(c);
    auto shares = c.mean_shares.parts();
    for (auto& v : shares)
      v *= 100;
    bars.push_back({name, std::move(shares)});
    kv[c.policy].push_back(
        {setup_name(c), c.kv_sync.seconds, fmt::format("n={}", c.kv_sync.count)});
    std::vector<cdf_series> ups;
    for (const auto& [shape, s] : c.scale_ups)
      ups.push_back({shape, s.seconds, fmt::format("n={}", s.count)});
    const std::string file = c.policy + "-" + setup_name(c);
    if (!ups.empty())
      out.push_back(
          {"scale-up-cdf-" + file + ".svg",
           cdf_chart_svg(fmt::format("Scale-up latency, {} {} ({} of {} prefetched)", c.policy,
                                     setup_name(c), c.prefetched, c.switches_timed),
                         "seconds from a switch to its weights all in", "share of scale-ups (%)",
                         ups)});
    chart_series active{"active models", {}, std::nullopt};
    const double m = static_cast<double>(std::max<std::size_t>(c.models, 1));
    for (const auto& [at, n] : c.active)
      active.points.emplace_back(at, 100 * static_cast<double>(n) / m);
    out.push_back(
        {"active-models-" + file + ".svg",
         step_chart_svg(
             fmt::format("Active models of {}, {} on {}", c.models, c.policy, device),
             "seconds since the run's start", fmt::format("active models (% of the {})", c.models),
             {active},
             {{100 * c.expected_active / m,
               fmt::format("E[m] = {:.2f} (T = {:.2f} s)", c.expected_active, c.service_seconds)},
              {100 * c.active_mean / m, fmt::format("mean {:.2f}", c.active_mean)}})});
  }
  out.insert(out.begin(),
             {"breakdown.svg", stacked_bar_svg("Where a request's latency goes on " + device,
                                               "mean share of latency (%)", part_names(), bars)});
  for (const auto& [policy, series] : kv)
    out.push_back(
        {"kv-sync-cdf-" + policy + ".svg", cdf_chart_svg("KV sync overhead per request, " + policy,
                                                         "seconds a request's steps waited for KV",
                                                         "share of requests (%)", series)});
  return out;
}

} // namespace

int run_breakdown(const simulate_options& o, const std::shared_ptr<const gpu::sim_profile>& profile,
                  const std::vector<std::string>& mix_slots, double prompt_mean, double output_mean,
                  report_files& reports, std::optional<std::ofstream>& svg,
                  const figure_place& figures) {
  std::vector<setup> setups;
  for (const auto& text : o.setups) {
    auto s = parse_setup(text);
    if (!s) {
      fmt::print(stderr, "aegaeon simulate: {}\n", s.error().message);
      return 2;
    }
    setups.push_back(*s);
  }
  fmt::print("where latency goes on {} simulated {} ({} prefill); {}, {:.0f} s of arrivals; SLO "
             "TTFT {:.2f} s, TBT {:.3f} s\n{:>20} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}  "
             "{:>11} {:>7}  {:>6} {:>6}\n",
             o.devices, profile->name, o.prefill_devices, o.dataset, o.duration, o.ttft, o.tbt,
             "policy", "setup", "attain", "pf.wait", "pf.exec", "dc.wait", "dc.exec", "control",
             "data", "prefetched", "kv max", "active", "E[m]");
  stop_on_interrupt("aegaeon simulate: stopping; the setups finished will be reported (Ctrl-C "
                    "again quits at once)");
  std::vector<breakdown_cell> cells;
  for (const auto& s : setups)
    for (const auto& policy : o.policies) {
      if (stop_requested())
        break;
      std::vector<std::string> names;
      for (std::size_t i = 0; i < s.models; ++i)
        names.push_back("model-" + std::to_string(i));
      std::size_t context = 0;
      const auto models = sim_models(o, mix_slots, names, 1, context);
      std::map<std::string, std::string> shapes;
      for (const auto& m : models)
        shapes[m.name] = *m.source.synthetic;
      const std::size_t cap = std::min<std::size_t>(1024, context / 2);
      const auto trace =
          make_trace({names, s.rate, o.duration, prompt_mean, output_mean, cap, cap, o.seed, {}});
      std::vector<double> arrivals;
      for (const auto& t : trace)
        arrivals.push_back(t.arrival);
      std::vector<actors::request_metrics> finished;
      auto r = simulate_cell(o, profile, policy, models, trace, o.duration, &finished);
      if (!r) {
        fmt::print(stderr, "aegaeon simulate: {}\n", r.error().message);
        return 1;
      }
      r->rate = s.rate;
      cells.push_back(breakdown_cell_of(*r, finished, arrivals, shapes, o.duration));
      fmt::print("{}", row(cells.back()));
      std::fflush(stdout);
    }
  if (reports.csv)
    *reports.csv << breakdown_csv(cells);
  const auto drawn = figures_of(cells, profile->name);
  if (reports.json) {
    nlohmann::json runs = nlohmann::json::array();
    for (const auto& c : cells)
      runs.push_back(to_json(c));
    const nlohmann::json doc = {{"breakdown", runs},
                                {"profile", profile->name},
                                {"profile_path", o.profile_path},
                                {"devices", o.devices},
                                {"prefill_devices", o.prefill_devices},
                                {"mix", o.mix},
                                {"dataset", o.dataset},
                                {"duration", o.duration},
                                {"ttft_slo", o.ttft},
                                {"tbt_slo", o.tbt},
                                {"seed", o.seed},
                                {"parts", part_names()}};
    *reports.json << doc.dump(2) << "\n";
  }
  if (svg)
    *svg << drawn.front().svg;
  if (figures.wanted()) {
    auto written = write_figures(drawn, figures);
    if (!written) {
      fmt::print(stderr, "aegaeon simulate: {}\n", written.error().message);
      return 1;
    }
    fmt::print("{} figures in {}\n", written->size(), figures.dir);
  }
  const bool interrupted = stop_requested();
  if (interrupted)
    fmt::print(stderr, "aegaeon simulate: interrupted; {} setups finished\n", cells.size());
  return interrupted ? 130 : 0;
}

void add_breakdown_options(CLI::App& cmd, simulate_options& o) {
  auto* breakdown = cmd.add_flag(
      "--breakdown", o.breakdown,
      "Instead of a sweep, for each of --setups: each part's mean share of a request's latency "
      "(prefill and decode waiting and execution, control overhead: steps held for weights "
      "arriving, data overhead: steps waiting for KV), CDFs of scale-up times by model shape and "
      "of each request's KV-sync time, and the active models over time against Theorem 3.1's "
      "E[m] = M(1 - e^(-rate T)), T the mean time in service. Runs aegaeon unless --policies is "
      "given; --svg draws the stacked bars, --figures (or --json) every figure");
  for (const char* sweep : {"--models", "--rates", "--slo-scales", "--trace", "--market"})
    breakdown->excludes(cmd.get_option(sweep));
  cmd.add_option("--setups", o.setups,
                 "The setups of --breakdown: models x requests per second "
                 "per model")
      ->delimiter(',')
      ->needs(breakdown)
      ->capture_default_str();
  auto* policies = cmd.get_option("--policies");
  cmd.parse_complete_callback([&o, policies] {
    if (o.breakdown && policies->count() == 0)
      o.policies = {"aegaeon"}; // the paper's breakdown is Aegaeon's
  });
}

} // namespace aeg::apps
