#include "apps/aegaeon/market.hpp"

#include "apps/aegaeon/cli_number.hpp"
#include "apps/aegaeon/figure.hpp"
#include "apps/aegaeon/interrupt.hpp"
#include "apps/aegaeon/policy_pool.hpp"
#include "apps/aegaeon/run_summary.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>

namespace aeg::apps {

namespace {

// One probe of the search: `policy` on `devices` devices.
struct probe {
  std::size_t devices = 0, prefill_devices = 0;
  run_result result;
};

// Prefill-only devices of `devices` for `policy`, in the proportion of the configured pool (at
// least one, and one decode device); none on a single device or for a colocated policy.
std::size_t prefill_share(const simulate_options& o, std::size_t devices,
                          const std::string& policy) {
  if (devices < 2 || o.prefill_devices == 0 || !splits_prefill(policy))
    return 0;
  const auto share = static_cast<double>(o.prefill_devices) / static_cast<double>(o.devices);
  const auto p = static_cast<std::size_t>(std::lround(share * static_cast<double>(devices)));
  return std::clamp<std::size_t>(p, 1, devices - 1);
}

struct market_run {
  const simulate_options& o;
  const std::shared_ptr<const gpu::sim_profile>& profile;
  const std::vector<actors::model_spec>& models;
  const std::vector<trace_request>& trace;
  std::vector<probe> probes;

  // The attainment of `policy` on `devices` devices (simulated once).
  result<double> attainment(const std::string& policy, std::size_t devices) {
    for (const auto& p : probes)
      if (p.result.policy == policy && p.devices == devices)
        return p.result.attainment;
    auto at = o;
    at.devices = devices;
    at.prefill_devices = prefill_share(o, devices, policy);
    auto r = simulate_cell(at, profile, policy, models, trace, o.duration);
    if (!r)
      return tl::unexpected(r.error());
    fmt::print("{:>20} {:>5} ({:>3} prefill)  {:6.1f}%  {:8.2f}  {:8.3f}  {:>8}\n", policy, devices,
               at.prefill_devices, 100 * r->attainment, r->ttft_p99, r->tbt_p99, r->switches);
    std::fflush(stdout);
    probes.push_back({devices, at.prefill_devices, std::move(*r)});
    return probes.back().result.attainment;
  }

  // The fewest devices at 90% (bisection: attainment grows with devices), none when even
  // market_devices fall short (or when interrupted: the caller checks).
  result<std::optional<std::size_t>> fewest(const std::string& policy) {
    std::size_t lo = 0, hi = o.market_devices; // lo falls short (0 trivially), hi reaches 90%
    auto top = attainment(policy, hi);
    if (!top)
      return tl::unexpected(top.error());
    if (*top < 0.9)
      return std::optional<std::size_t>{};
    while (hi - lo > 1 && !stop_requested()) {
      const std::size_t mid = lo + (hi - lo) / 2;
      auto a = attainment(policy, mid);
      if (!a)
        return tl::unexpected(a.error());
      (*a >= 0.9 ? hi : lo) = mid;
    }
    return hi - lo > 1 ? std::optional<std::size_t>{} : std::optional<std::size_t>{hi};
  }
};

nlohmann::json market_json(const simulate_options& o, const std::string& profile,
                           const std::vector<double>& rates, const nlohmann::json& fewest,
                           const std::vector<probe>& probes) {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& p : probes) {
    auto r = to_json(p.result);
    r["devices"] = p.devices;
    r["prefill_devices"] = p.prefill_devices;
    runs.push_back(std::move(r));
  }
  return {{"market",
           {{"models", o.market},
            {"rates", rates},
            {"min_rate", o.market_min_rate},
            {"mean_rate", o.market_mean_rate},
            {"max_rate", o.market_max_rate},
            {"max_devices", o.market_devices}}},
          {"profile", profile},
          {"profile_path", o.profile_path},
          {"mix", o.mix},
          {"dataset", o.dataset},
          {"duration", o.duration},
          {"ttft_slo", o.ttft},
          {"tbt_slo", o.tbt},
          {"seed", o.seed},
          {"fewest_devices", fewest},
          {"probes", runs}};
}

// The attainment of every probe against its device count, the fewest at 90% marked.
std::string market_svg(const simulate_options& o, const std::string& profile,
                       const std::vector<probe>& probes,
                       const std::map<std::string, std::optional<std::size_t>>& fewest) {
  std::vector<chart_series> series;
  for (const auto& policy : o.policies) {
    chart_series s{policy, {}, std::nullopt};
    for (const auto& p : probes)
      if (p.result.policy == policy)
        s.points.emplace_back(static_cast<double>(p.devices), 100 * p.result.attainment);
    std::sort(s.points.begin(), s.points.end());
    if (auto it = fewest.find(policy); it != fewest.end() && it->second)
      s.marker_x = static_cast<double>(*it->second);
    series.push_back(std::move(s));
  }
  return line_chart_svg(fmt::format("A market of {} models on simulated {}", o.market, profile),
                        "devices", "SLO attainment (%)", series);
}

} // namespace

int run_market(const simulate_options& o, const std::shared_ptr<const gpu::sim_profile>& profile,
               const std::vector<std::string>& mix_slots, double prompt_mean, double output_mean,
               report_files& reports, std::optional<std::ofstream>& svg) {
  auto rates = market_rates(o.market, o.market_min_rate, o.market_mean_rate, o.market_max_rate);
  if (!rates) {
    fmt::print(stderr, "aegaeon simulate: --market: {}\n", rates.error().message);
    return 2;
  }
  std::vector<std::string> names;
  for (std::size_t i = 0; i < o.market; ++i)
    names.push_back(fmt::format("market-{:02}", i));
  std::size_t context = 0;
  const auto models = sim_models(o, mix_slots, names, 1, context);
  const std::size_t cap = std::min<std::size_t>(1024, context / 2);
  const trace_options to{names, 0, o.duration, prompt_mean, output_mean, cap, cap, o.seed, *rates};
  const auto trace = make_trace(to);
  double total = 0;
  for (double r : *rates)
    total += r;
  fmt::print("a market of {} models on simulated {} ({}): {:.3f} req/s in all, {:.3f} to {:.3f} "
             "per model (mean {:.4f}); {:.0f} s of arrivals, {} requests; SLO TTFT {:.2f} s, TBT "
             "{:.3f} s\nthe fewest devices (of up to {}) at 90% attainment, by bisection:\n"
             "{:>20} {:>5} {:>13}  {:>7}  {:>8}  {:>8}  {:>8}\n",
             o.market, profile->name, o.profile_path, total, rates->back(), rates->front(),
             total / static_cast<double>(o.market), o.duration, trace.size(), o.ttft, o.tbt,
             o.market_devices, "policy", "GPUs", "", "attain", "TTFT p99", "TBT p99", "switches");
  stop_on_interrupt("aegaeon simulate: stopping; the probes finished will be reported (Ctrl-C "
                    "again quits at once)");
  market_run run{o, profile, models, trace, {}};
  std::map<std::string, std::optional<std::size_t>> fewest;
  nlohmann::json fewest_json = nlohmann::json::object();
  for (const auto& policy : o.policies) {
    if (stop_requested())
      break;
    auto n = run.fewest(policy);
    if (!n) {
      fmt::print(stderr, "aegaeon simulate: {}\n", n.error().message);
      return 1;
    }
    if (stop_requested())
      break; // its search did not finish
    fewest[policy] = *n;
    fewest_json[policy] = *n ? nlohmann::json(**n) : nlohmann::json(nullptr);
  }
  fmt::print("\nthe fewest devices at 90% attainment:\n");
  for (const auto& [policy, n] : fewest)
    fmt::print("{:>20}: {}\n", policy,
               n ? std::to_string(*n) : fmt::format("more than {}", o.market_devices));
  if (reports.csv) {
    *reports.csv << "devices,prefill_devices," << csv_header();
    for (const auto& p : run.probes)
      *reports.csv << p.devices << "," << p.prefill_devices << "," << csv_row(p.result);
  }
  if (reports.json)
    *reports.json << market_json(o, profile->name, *rates, fewest_json, run.probes).dump(2) << "\n";
  if (svg)
    *svg << market_svg(o, profile->name, run.probes, fewest);
  const bool interrupted = stop_requested();
  if (interrupted)
    fmt::print(stderr, "aegaeon simulate: interrupted; {} probes finished\n", run.probes.size());
  return interrupted ? 130 : 0;
}

void add_market_options(CLI::App& cmd, simulate_options& o) {
  auto* market =
      cmd.add_option("--market", o.market,
                     "The production scenario instead of a sweep: this many models with skewed "
                     "rates (the paper's: 47), and the fewest devices each policy needs at 90% "
                     "attainment")
          ->check(number({.lo = 1, .hi = 10000, .integer = true}));
  for (const char* sweep : {"--models", "--rates", "--slo-scales", "--trace", "--figures"})
    market->excludes(cmd.get_option(sweep));
  cmd.add_option("--market-min-rate", o.market_min_rate, "The least requested model's rate, req/s")
      ->check(number({.lo = 0, .hi = 1000, .above = true}))
      ->needs(market)
      ->capture_default_str();
  cmd.add_option("--market-mean-rate", o.market_mean_rate, "The mean rate over the models, req/s")
      ->check(number({.lo = 0, .hi = 1000, .above = true}))
      ->needs(market)
      ->capture_default_str();
  cmd.add_option("--market-max-rate", o.market_max_rate, "The most requested model's rate, req/s")
      ->check(number({.lo = 0, .hi = 1000, .above = true}))
      ->needs(market)
      ->capture_default_str();
  cmd.add_option("--market-devices", o.market_devices,
                 "The most devices the search tries (a policy short of 90% there has no answer)")
      ->check(number({.lo = 1, .hi = 4096, .integer = true}))
      ->needs(market)
      ->capture_default_str();
}

} // namespace aeg::apps
