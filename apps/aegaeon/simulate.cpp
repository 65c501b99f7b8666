#include "apps/aegaeon/simulate.hpp"

#include "actors/simulation.hpp"
#include "apps/aegaeon/breakdown.hpp"
#include "apps/aegaeon/cli_number.hpp"
#include "apps/aegaeon/figure.hpp"
#include "apps/aegaeon/interrupt.hpp"
#include "apps/aegaeon/market.hpp"
#include "apps/aegaeon/node_placement.hpp"
#include "apps/aegaeon/policy_pool.hpp"
#include "apps/aegaeon/report_figures.hpp"
#include "apps/aegaeon/run_summary.hpp"
#include "apps/aegaeon/trace.hpp"
#include "gpu/sim/sim_profile.hpp"
#include "models/llama/config.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <unistd.h>

namespace aeg::apps {

namespace {

// "qwen2.5-7b:6,yi-9b:2" as the shape of each slot: model i takes slot i mod the total.
result<std::vector<std::string>> parse_mix(const std::string& mix) {
  std::vector<std::string> slots;
  std::size_t at = 0;
  while (at <= mix.size()) {
    const auto comma = std::min(mix.find(',', at), mix.size());
    const std::string part = mix.substr(at, comma - at);
    at = comma + 1;
    const auto colon = part.find(':');
    const std::string shape = part.substr(0, colon);
    std::size_t count = 1;
    if (colon != std::string::npos) {
      const std::string n = part.substr(colon + 1);
      if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos || n.size() > 4 ||
          std::stoul(n) == 0)
        return fail(errc::invalid_argument,
                    "--mix: '" + part + "': give shape:count with a count from 1 to 9999");
      count = std::stoul(n);
    }
    if (auto known = models::llama_config::synthetic(shape); !known)
      return fail(errc::invalid_argument, "--mix: " + known.error().message);
    slots.insert(slots.end(), count, shape);
  }
  return slots;
}

struct dataset_lengths {
  double prompt_mean, output_mean;
};

// ShareGPT-like log-normal lengths (trace.hpp), with the paper's ix2/ox2 variants.
dataset_lengths lengths_of(const std::string& dataset) {
  const trace_options sharegpt; // the trace's own ShareGPT-like means
  const double prompt = sharegpt.prompt_mean, output = sharegpt.output_mean;
  if (dataset == "ix2")
    return {2 * prompt, output};
  if (dataset == "ox2")
    return {prompt, 2 * output};
  return {prompt, output};
}

std::string progress_line(const std::string& policy, std::size_t models, double simulated,
                          double duration, std::size_t ended, std::size_t total) {
  return fmt::format("\r  {} with {} models: {:.0f} of {:.0f} s of arrivals simulated, {}/{} "
                     "requests ended\033[K",
                     policy, models, std::min(simulated, duration), duration, ended, total);
}

// The variable a sweep varies, for the figure's x axis (none when several do).
struct swept {
  std::string name, label;
  double (*of)(const run_result&);
};

std::optional<swept> swept_variable(const simulate_options& o, std::size_t counts) {
  const int varying = (counts > 1) + (o.rates.size() > 1) + (o.slo_scales.size() > 1);
  if (varying != 1)
    return std::nullopt;
  if (counts > 1)
    return swept{"models", "models",
                 [](const run_result& r) { return static_cast<double>(r.models); }};
  if (o.rates.size() > 1)
    return swept{"rate", "requests per second per model",
                 [](const run_result& r) { return r.rate; }};
  return swept{"slo_scale", "SLO scale", [](const run_result& r) { return r.slo_scale; }};
}

// The JSON report of the cells finished.
nlohmann::json report_of(const simulate_options& o, const std::string& profile, double arrivals,
                         const nlohmann::json& goodput, const std::vector<run_result>& all,
                         bool interrupted) {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& r : all)
    runs.push_back(to_json(r));
  nlohmann::json doc = {{"profile", profile},   {"profile_path", o.profile_path},
                        {"devices", o.devices}, {"prefill_devices", o.prefill_devices},
                        {"mix", o.mix},         {"dataset", o.dataset},
                        {"duration", arrivals}, {"ttft_slo", o.ttft},
                        {"tbt_slo", o.tbt},     {"seed", o.seed},
                        {"nodes", o.nodes},     {"placement", o.placement},
                        {"goodput", goodput},   {"runs", runs}};
  if (interrupted)
    doc["interrupted"] = true;
  return doc;
}

} // namespace

std::vector<actors::model_spec> sim_models(const simulate_options& o,
                                           const std::vector<std::string>& mix_slots,
                                           const std::vector<std::string>& names, double slo_scale,
                                           std::size_t& context) {
  std::vector<actors::model_spec> models;
  context = std::numeric_limits<std::size_t>::max();
  for (std::size_t i = 0; i < names.size(); ++i) {
    actors::model_spec m;
    m.name = names[i];
    m.source.synthetic = mix_slots[i % mix_slots.size()];
    m.ttft_seconds = o.ttft * slo_scale;
    m.tbt_seconds = o.tbt * slo_scale;
    context =
        std::min(context, models::llama_config::synthetic(*m.source.synthetic)->context_length);
    models.push_back(std::move(m));
  }
  return models;
}

result<run_result> simulate_cell(const simulate_options& o,
                                 const std::shared_ptr<const gpu::sim_profile>& profile,
                                 const std::string& policy,
                                 const std::vector<actors::model_spec>& models,
                                 const std::vector<trace_request>& trace, double duration,
                                 std::vector<actors::request_metrics>* finished) {
  auto spec = policy_pool({"sim", o.devices, o.prefill_devices, 0, o.max_batch_tokens, o.max_seqs},
                          policy, models);
  const std::size_t prefill = splits_prefill(policy) ? o.prefill_devices : 0;
  AEG_TRY(check_node_split(o.devices, prefill, o.nodes));
  AEG_TRY_ASSIGN(const auto placement, parse_node_placement(o.placement));
  if (policy == "muxserve") {
    auto placed =
        place_muxserve_on_nodes(spec, trace, duration, profile->memory_bytes, {o.nodes, placement});
    if (!placed)
      return fail(placed.error().code, "muxserve: " + placed.error().message);
  } else {
    place_on_nodes(spec, prefill, {o.nodes, placement});
  }
  if (serverless_baseline(policy)) {
    auto slower = std::make_shared<gpu::sim_profile>(*profile);
    slower->h2d_bytes_per_second =
        std::min(slower->h2d_bytes_per_second, serverless_load_bytes_per_second);
    spec.sim_profile = std::move(slower);
  } else {
    spec.sim_profile = profile;
  }
  spec.policy.max_quota_seconds = o.max_quota;
  spec.host_kv_bytes = o.host_kv_mib << 20;
  spec.slab_bytes = o.slab_mib << 20;
  run_result res;
  res.policy = policy;
  res.models = models.size();
  count_arrivals(res, trace);
  std::vector<std::string> names; // as the pool names its instances
  for (std::size_t i = 0; i < spec.instances.size(); ++i)
    names.push_back(spec.instances[i].device + "/" + actors::to_string(spec.instances[i].role) +
                    "#" + std::to_string(i));
  actors::simulation_options so;
  if (isatty(STDERR_FILENO) != 0)
    so.progress = [&](double simulated, std::size_t ended, std::size_t total) {
      fmt::print(stderr, "{}",
                 progress_line(policy, models.size(), simulated, duration, ended, total));
    };
  const auto t0 = std::chrono::steady_clock::now();
  auto report = actors::simulate(std::move(spec), trace, so);
  if (so.progress)
    fmt::print(stderr, "\r\033[K");
  if (!report)
    return fail(report.error().code, policy + " with " + std::to_string(models.size()) +
                                         " models: " + report.error().message);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.rejected = report->rejected;
  res.first_rejection = report->first_rejection;
  summarize(res, report->metrics);
  if (finished)
    *finished = std::move(report->metrics.finished);
  // The stats were taken at the end: the last recent_switches_kept (1024) switches of each
  // instance, in virtual time.
  res.timeline_seconds = report->simulated_seconds;
  for (std::size_t i = 0; i < report->instances.size(); ++i) {
    res.switches += report->instances[i].switches;
    instance_switches seen;
    seen.name = i < names.size() ? names[i] : "instance " + std::to_string(i);
    seen.merge(report->instances[i], report->simulated_seconds);
    res.stepped += seen.stepped;
    res.instances.push_back(std::move(seen));
  }
  return res;
}

int run_simulate(const simulate_options& o) {
  auto loaded = gpu::read_sim_profile(o.profile_path);
  if (!loaded) {
    // The default is relative: run outside the project, it is simply not there.
    std::string hint;
    std::error_code ec;
    if (loaded.error().code == errc::not_found &&
        std::filesystem::path(o.profile_path).is_relative())
      hint = fmt::format("; the path is relative to the current directory ({}): run from the "
                         "project root or give --profile",
                         std::filesystem::current_path(ec).string());
    fmt::print(stderr, "aegaeon simulate: --profile: {}{}\n", loaded.error().message, hint);
    return 2;
  }
  const auto profile = std::make_shared<const gpu::sim_profile>(std::move(*loaded));
  auto slots = parse_mix(o.mix);
  if (!slots) {
    fmt::print(stderr, "aegaeon simulate: {}\n", slots.error().message);
    return 2;
  }
  if (o.prefill_devices >= o.devices) {
    fmt::print(stderr,
               "aegaeon simulate: --prefill-devices {} leaves no decode device of {}; use fewer, "
               "or 0 for colocated instances\n",
               o.prefill_devices, o.devices);
    return 2;
  }
  for (const auto& policy : o.policies)
    if (auto split =
            check_node_split(o.devices, splits_prefill(policy) ? o.prefill_devices : 0, o.nodes);
        !split) {
      fmt::print(stderr, "aegaeon simulate: {} (for {})\n", split.error().message, policy);
      return 2;
    }
  auto files = bench_files::open(o.json_path, o.csv_path, o.trace_path);
  std::optional<std::ofstream> svg;
  if (files && !o.svg_path.empty()) {
    auto opened = open_output(o.svg_path);
    if (!opened)
      files = tl::unexpected(opened.error());
    else
      svg = std::move(*opened);
  }
  const auto figures = figure_place::of(o.json_path, o.figures_dir);
  if (auto made = !files || o.figures_dir.empty() ? result<void>{} : figures.prepare(); !made)
    files = tl::unexpected(made.error());
  if (!files) {
    fmt::print(stderr, "aegaeon simulate: {}\n", files.error().message);
    return 2;
  }
  auto lengths = lengths_of(o.dataset);
  if (o.prompt_mean > 0)
    lengths.prompt_mean = o.prompt_mean;
  if (o.output_mean > 0)
    lengths.output_mean = o.output_mean;
  // Every report written and closed (a failed write is an error), then `rc`.
  auto close_all = [&](int rc) {
    if (svg)
      if (auto closed = close_output(*svg, o.svg_path); !closed) {
        fmt::print(stderr, "aegaeon simulate: {}\n", closed.error().message);
        return 1;
      }
    if (auto closed = files->reports.close(); !closed) {
      fmt::print(stderr, "aegaeon simulate: {}\n", closed.error().message);
      return 1;
    }
    return rc;
  };
  if (o.breakdown)
    return close_all(run_breakdown(o, profile, *slots, lengths.prompt_mean, lengths.output_mean,
                                   files->reports, svg, figures));
  if (o.market > 0)
    return close_all(run_market(o, profile, *slots, lengths.prompt_mean, lengths.output_mean,
                                files->reports, svg));
  std::vector<std::size_t> counts = o.model_counts;
  std::vector<std::string> traced;
  for (const auto& r : files->trace)
    if (std::find(traced.begin(), traced.end(), r.model) == traced.end())
      traced.push_back(r.model);
  if (!o.trace_path.empty())
    counts = {traced.size()};
  const double arrivals = o.trace_path.empty() ? o.duration : files->trace.back().arrival;
  fmt::print("{} simulated {} ({} prefill, {} decode; aegaeon and fcfs), profile {}\n"
             "models: {}; {}, {:.0f} s of arrivals; SLO TTFT {:.2f} s, TBT {:.3f} s (x scale)\n",
             o.devices, profile->name, o.prefill_devices, o.devices - o.prefill_devices,
             o.profile_path, o.mix, o.trace_path.empty() ? o.dataset : o.trace_path, arrivals,
             o.ttft, o.tbt);
  if (o.nodes > 1)
    fmt::print("{} nodes of {} devices each, {} placement\n", o.nodes, o.devices / o.nodes,
               o.placement);
  stop_on_interrupt("aegaeon simulate: stopping; the cells finished will be reported (Ctrl-C "
                    "again quits at once)");
  std::vector<run_result> all;
  double simulated = 0, wall = 0;
  bool interrupted = false;
  for (const double rate : o.rates)
    for (const double scale : o.slo_scales)
      for (const std::size_t n : counts) {
        if (interrupted || stop_requested()) {
          interrupted = true;
          break;
        }
        std::vector<std::string> names = traced;
        for (std::size_t i = 0; names.size() < n; ++i)
          names.push_back("model-" + std::to_string(i));
        std::size_t context = 0;
        const auto models = sim_models(o, *slots, names, scale, context);
        // Lengths capped as `bench` caps them (the same seed gives the same arrivals), and so
        // that prompt and output together fit every model's context.
        const std::size_t cap = std::min<std::size_t>(1024, context / 2);
        auto trace = o.trace_path.empty() ? make_trace({names,
                                                        rate,
                                                        o.duration,
                                                        lengths.prompt_mean,
                                                        lengths.output_mean,
                                                        cap,
                                                        cap,
                                                        o.seed,
                                                        {}})
                                          : files->trace;
        fmt::print("\n{} models at {:.3f} req/s each, SLO x{:g}: {} requests\n{}", n, rate, scale,
                   trace.size(), table_header());
        for (const auto& policy : o.policies) {
          auto r = simulate_cell(o, profile, policy, models, trace, arrivals);
          if (!r) {
            fmt::print(stderr, "aegaeon simulate: {}\n", r.error().message);
            return 1;
          }
          r->rate = rate;
          r->slo_scale = scale;
          simulated += arrivals;
          wall += r->seconds;
          fmt::print("{}{}", table_row(*r), table_notes(*r));
          std::fflush(stdout);
          all.push_back(std::move(*r));
        }
      }
  fmt::print("\n{} cells: {:.1f} h of arrivals simulated in {:.1f} s ({:.0f}x real time)\n",
             all.size(), simulated / 3600, wall, wall > 0 ? simulated / wall : 0.0);
  const auto x = swept_variable(o, counts.size());
  std::vector<chart_series> series;
  nlohmann::json goodput = nlohmann::json::object();
  if (x) {
    // The goodput is the most load (models, rate) or the strictest SLO scale still at 90%.
    const bool smallest = x->name == "slo_scale";
    fmt::print("goodput (the {} {} at >= 90% attainment):\n", smallest ? "smallest" : "largest",
               x->name);
    for (const auto& policy : o.policies) {
      chart_series s{policy, {}, std::nullopt};
      for (const auto& r : all)
        if (r.policy == policy) {
          s.points.emplace_back(x->of(r), 100 * r.attainment);
          if (r.attainment >= 0.9 &&
              (!s.marker_x || (smallest ? x->of(r) < *s.marker_x : x->of(r) > *s.marker_x)))
            s.marker_x = x->of(r);
        }
      std::sort(s.points.begin(), s.points.end()); // drawn left to right, whatever the order given
      fmt::print("{:>19}: {}\n", policy, s.marker_x ? fmt::format("{:g}", *s.marker_x) : "none");
      goodput[policy] = s.marker_x ? nlohmann::json(*s.marker_x) : nlohmann::json(nullptr);
      series.push_back(std::move(s));
    }
  }
  auto& reports = files->reports;
  if (reports.csv) {
    *reports.csv << csv_header();
    for (const auto& r : all)
      *reports.csv << csv_row(r);
  }
  if (reports.json || figures.wanted()) {
    const auto doc = report_of(o, profile->name, arrivals, goodput, all, interrupted);
    if (reports.json)
      *reports.json << doc.dump(2) << "\n";
    if (draw_report_figures(doc, figures, "aegaeon simulate") != 0)
      return 1;
  }
  if (svg) {
    if (x)
      *svg << line_chart_svg(
          fmt::format("SLO attainment on {} {} ({})", o.devices, profile->name, o.dataset),
          x->label, "SLO attainment (%)", series);
    else
      fmt::print(stderr,
                 "aegaeon simulate: no figure: --svg plots one swept variable (models, "
                 "rates or SLO scales), and this sweep varies {}\n",
                 counts.size() + o.rates.size() + o.slo_scales.size() == 3 ? "none" : "several");
  }
  if (interrupted)
    fmt::print(stderr, "aegaeon simulate: interrupted; {} cells finished\n", all.size());
  return close_all(interrupted ? 130 : 0);
}

CLI::App* add_simulate_command(CLI::App& app, simulate_options& o) {
  auto* cmd = app.add_subcommand(
      "simulate",
      "Run the pool in virtual time on simulated GPUs (the same actors and policies; costs from "
      "a device profile) and sweep models, rates and SLOs as the paper's figures do");
  cmd->add_option("--profile", o.profile_path,
                  "Device profile (JSON): profiles/ has H800, H100, H20, A100 and A10")
      ->capture_default_str();
  cmd->add_option("--devices", o.devices, "Simulated GPUs in every pool")
      ->check(number({.lo = 1, .hi = 4096, .integer = true}))
      ->capture_default_str();
  cmd->add_option("--prefill-devices", o.prefill_devices,
                  "Prefill-only GPUs for aegaeon and fcfs (the rest decode); 0: colocated")
      ->check(number({.lo = 0, .hi = 4095, .integer = true}))
      ->capture_default_str();
  cmd->add_option("--mix", o.mix,
                  "Model shapes and their shares; model i takes the (i mod total)-th slot")
      ->capture_default_str();
  cmd->add_option("--models", o.model_counts, "Model counts to sweep")
      ->delimiter(',')
      ->check(number({.lo = 1, .hi = 100000, .integer = true}))
      ->capture_default_str();
  cmd->add_option("--rates,--rate", o.rates, "Requests per second per model, to sweep")
      ->delimiter(',')
      ->check(number({.lo = 0, .hi = 1000, .above = true}))
      ->capture_default_str();
  cmd->add_option("--slo-scales", o.slo_scales,
                  "Factors on --ttft and --tbt to sweep (the paper's 0.5, 0.3, 0.2)")
      ->delimiter(',')
      ->check(number({.lo = 0, .hi = 100, .above = true}))
      ->capture_default_str();
  cmd->add_option("--policies", o.policies,
                  "Policies to compare; a decode switch policy's name runs Aegaeon's pool with it")
      ->delimiter(',')
      ->check(CLI::IsMember(pool_policy_names()))
      ->capture_default_str();
  cmd->add_option("--duration", o.duration, "Seconds of arrivals")
      ->check(number({.lo = 0, .hi = 30 * 86400, .above = true}))
      ->capture_default_str();
  cmd->add_option("--ttft", o.ttft, "Time-to-first-token SLO, seconds")
      ->check(number({.lo = 0, .hi = 3600, .above = true}))
      ->capture_default_str();
  cmd->add_option("--tbt", o.tbt, "Time-between-tokens SLO, seconds")
      ->check(number({.lo = 0, .hi = 60, .above = true}))
      ->capture_default_str();
  cmd->add_option("--dataset", o.dataset, "Lengths: sharegpt, ix2 (inputs x2), ox2 (outputs x2)")
      ->check(CLI::IsMember({"sharegpt", "ix2", "ox2"}))
      ->capture_default_str();
  cmd->add_option("--prompt-mean", o.prompt_mean, "Mean prompt length instead of the dataset's")
      ->check(number({.lo = 1, .hi = 1 << 20}));
  cmd->add_option("--output-mean", o.output_mean, "Mean output length instead of the dataset's")
      ->check(number({.lo = 1, .hi = 1 << 20}));
  cmd->add_option("--host-kv-mib", o.host_kv_mib, "The host KV pool (swapped and handed-off KV)")
      ->check(number({.lo = 1, .hi = 1 << 30, .integer = true}))
      ->capture_default_str();
  cmd->add_option("--slab-mib", o.slab_mib, "KV slab size (raised to hold 4 of the largest block)")
      ->check(number({.lo = 1, .hi = 1 << 20, .integer = true}))
      ->capture_default_str();
  cmd->add_option("--max-quota", o.max_quota,
                  "The weighted round-robin's longest turn (the paper's Q_MAX), seconds")
      ->check(number({.lo = 0, .hi = 3600, .above = true}))
      ->capture_default_str();
  cmd->add_option("--max-batch-tokens", o.max_batch_tokens, "Tokens in one step")
      ->check(number({.lo = 16, .hi = 1 << 20, .integer = true}))
      ->capture_default_str();
  cmd->add_option("--max-seqs", o.max_seqs, "Sequences in one step")
      ->check(number({.lo = 1, .hi = 1 << 16, .integer = true}))
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seed of the synthetic arrivals")->capture_default_str();
  cmd->add_option("--trace", o.trace_path,
                  "Replay a JSONL trace (arrival, model, prompt_tokens, output_tokens) instead");
  cmd->add_option("--json", o.json_path, "Write the results as JSON");
  cmd->add_option("--csv", o.csv_path, "Write the results as CSV");
  cmd->add_option("--svg", o.svg_path,
                  "Draw attainment against the swept variable, with the 90% line and goodput");
  cmd->add_option("--figures", o.figures_dir,
                  "Draw every figure (SVG: attainment, TTFT/TBT and switch CDFs, a timeline per "
                  "cell) into this directory; default: beside --json, named after it");
  add_market_options(*cmd, o);
  add_node_options(*cmd, o.nodes, o.placement);
  add_breakdown_options(*cmd, o);
  return cmd;
}

} // namespace aeg::apps
