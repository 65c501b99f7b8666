#include "apps/aegaeon/bench.hpp"

#include "actors/generation.hpp"
#include "actors/pool.hpp"
#include "actors/runtime_config.hpp"
#include "apps/aegaeon/interrupt.hpp"
#include "apps/aegaeon/policy_pool.hpp"
#include "apps/aegaeon/report_figures.hpp"
#include "apps/aegaeon/run_summary.hpp"
#include "apps/aegaeon/switch_watch.hpp"
#include "apps/aegaeon/trace.hpp"
#include "gpu/registry.hpp"
#include "models/llama/config.hpp"
#include "models/llama/weights.hpp"
#include "models/sizing.hpp"

#include <caf/all.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>
#include <unistd.h>

namespace aeg::apps {

namespace {

using arrive_atom = caf::atom_constant<caf::atom("arrive")>;
using run_atom = caf::atom_constant<caf::atom("run")>;

// The proxy refuses with a message in the error's context; show that rather than CAF's dump.
std::string reason_of(caf::actor_system& sys, const caf::error& e) {
  const auto& ctx = e.context();
  if (ctx.match_elements<std::string>())
    return ctx.get_as<std::string>(0);
  return sys.render(e);
}

// Replays the trace into the proxy at the trace's times (CAF's clock: no thread sleeps) and
// counts ends; answers `run` once every request has ended.
class client final : public caf::event_based_actor {
public:
  client(caf::actor_config& cfg, actors::proxy_actor proxy, std::vector<trace_request> trace)
      : caf::event_based_actor(cfg), proxy_(std::move(proxy)), trace_(std::move(trace)) {}

  caf::behavior make_behavior() override {
    return {
        [this](run_atom) -> caf::result<std::size_t, std::string> {
          done_ = make_response_promise<std::size_t, std::string>();
          for (std::size_t i = 0; i < trace_.size(); ++i)
            delayed_send(this,
                         std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::duration<double>(trace_[i].arrival)),
                         arrive_atom::value, i);
          if (trace_.empty())
            done_.deliver(std::size_t{0}, std::string{});
          return done_;
        },
        [this](arrive_atom, std::size_t i) {
          const auto& t = trace_[i];
          actors::generation_request r;
          r.id = i;
          r.model = t.model;
          for (std::size_t k = 0; k < t.prompt_tokens; ++k)
            r.prompt.push_back(static_cast<std::int32_t>(100 + (k * 7919 + i * 31) % 4000));
          r.max_tokens = t.output_tokens;
          r.sink = caf::actor_cast<actors::generation_sink>(this);
          // The results are the pool's metrics, not what is sent here.
          r.delivery = actors::token_delivery::none;
          request(proxy_, caf::infinite, actors::submit_atom::value, std::move(r))
              .then([](std::uint64_t) {},
                    [this](caf::error& e) {
                      if (rejected_++ == 0)
                        first_rejection_ = reason_of(system(), e);
                      ended();
                    });
        },
        [](actors::token_atom, std::uint64_t, std::int32_t, const aeg::models::token_logprobs&) {},
        [this](actors::done_atom, const actors::generation_result&) { ended(); },
    };
  }

private:
  void ended() {
    ++ended_;
    // Progress on a terminal: requests ended of the run's total.
    if (isatty(STDERR_FILENO) != 0) {
      fmt::print(stderr, "\r  {}/{} requests done", ended_, trace_.size());
      if (ended_ == trace_.size())
        fmt::print(stderr, "\r\033[K");
    }
    if (ended_ == trace_.size())
      done_.deliver(rejected_, first_rejection_);
  }
  actors::proxy_actor proxy_;
  std::vector<trace_request> trace_;
  caf::typed_response_promise<std::size_t, std::string> done_;
  std::size_t ended_ = 0, rejected_ = 0;
  std::string first_rejection_;
};

actors::pool_spec make_spec(const bench_options& o, const std::string& policy,
                            const std::vector<std::string>& models) {
  const std::size_t prefill = o.prefill_devices >= 0 ? static_cast<std::size_t>(o.prefill_devices)
                              : o.devices < 3        ? 0
                                                     : std::max<std::size_t>(1, o.devices * 3 / 8);
  std::vector<actors::model_spec> specs;
  for (std::size_t i = 0; i < models.size(); ++i) {
    actors::model_spec m;
    m.name = models[i];
    m.source.synthetic = o.shape;
    m.source.seed = 1 + i;
    m.ttft_seconds = o.ttft;
    m.tbt_seconds = o.tbt;
    specs.push_back(m);
  }
  auto s = policy_pool({o.backend, o.devices, prefill, o.device_mib << 20, 1024, 32}, policy,
                       std::move(specs));
  s.shared_dir = o.shared_dir;
  s.host_kv_bytes = std::size_t{512} << 20;
  s.slab_bytes = std::size_t{16} << 20;
  return s;
}

// One run: a pool of `policy` for `models`, the trace replayed into it. errc::cancelled once
// Ctrl-C was pressed: the run is abandoned, its pool stopped.
result<run_result> run_one(caf::actor_system& sys, const bench_options& o,
                           const std::string& policy, const std::vector<std::string>& models,
                           const std::vector<trace_request>& trace) {
  run_result res;
  res.policy = policy;
  res.models = models.size();
  res.rate = o.rate;
  count_arrivals(res, trace);
  if (stop_requested()) // asked before the pool starts, and again once it has: starting takes long
    return fail(errc::cancelled, "interrupted");
  auto p = actors::pool::start(sys, make_spec(o, policy, models));
  if (!p)
    return fail(p.error().code, policy + ": the pool did not start: " + p.error().message);
  if (stop_requested())
    return fail(errc::cancelled, "interrupted");
  caf::scoped_actor self{sys}; // the driver waits here; the pool's actors never block
  auto c = sys.spawn<client>((*p)->proxy(), trace);
  const auto start = std::chrono::steady_clock::now();
  auto watch = spawn_switch_watch(sys, (*p)->instances(), (*p)->instance_names(), start);
  std::optional<error> broken;
  bool answered = false;
  // Sent rather than requested: the answer arrives as a message, and the wait wakes now and then
  // to see a Ctrl-C, which abandons the run.
  self->send(c, run_atom::value);
  while (!answered && !broken)
    self->receive(
        [&](std::size_t rejected, std::string& why) {
          res.rejected = rejected;
          res.first_rejection = std::move(why);
          answered = true;
        },
        [&](caf::error& e) {
          broken = error{errc::internal, sys.render(e)};
        },
        caf::after(std::chrono::milliseconds(100)) >>
            [&] {
              if (stop_requested())
                broken = error{errc::cancelled, "interrupted"};
            });
  if (broken) {
    self->send_exit(c, caf::exit_reason::user_shutdown); // its arrivals still to come go with it
    self->send_exit(watch, caf::exit_reason::user_shutdown);
    return tl::unexpected(*broken);
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  actors::pool_metrics m;
  self->request((*p)->proxy(), caf::infinite, actors::metrics_atom::value)
      .receive([&](const actors::pool_metrics& pm) { m = pm; }, [](caf::error&) {});
  self->request(watch, caf::infinite, collect_atom::value)
      .receive([&](switch_report& r) { res.instances = std::move(r.instances); },
               [](caf::error&) {});
  self->send_exit(watch, caf::exit_reason::user_shutdown);
  for (const auto& inst : res.instances) {
    res.switches += inst.total;
    res.stepped += inst.stepped;
  }
  res.timeline_seconds = res.seconds;
  summarize(res, m);
  return res;
}

} // namespace

namespace {

// What a pool of `o` needs before it is worth building: a known shape, a backend that is there,
// and devices that hold one model and the KV of one longest request. Checked up front so that a
// setup mistake reads as an error, not as a table of 0% runs.
result<models::llama_config> check_setup(const bench_options& o, std::size_t longest_tokens) {
  auto config = models::llama_config::synthetic(o.shape);
  if (!config)
    return fail(errc::invalid_argument, "--shape: " + config.error().message);
  if (o.backend == "cuda" && !gpu::gpu_available())
    return fail(errc::unavailable, "--backend cuda: no usable GPU is visible here; use --backend "
                                   "cpu, or run where `nvidia-smi` lists a GPU");
  const auto format = models::compute_format::for_backend(
      o.backend == "cuda" ? gpu::backend_kind::cuda : gpu::backend_kind::cpu);
  // Exactly what the pool will lay out on each device for the most models a run serves: the
  // weights (room to prefetch a second model only where the KV still fits), the step buffers and
  // the KV of one longest request in whole slabs.
  std::vector<std::string> names;
  const std::size_t most =
      o.model_counts.empty() ? 1 : *std::max_element(o.model_counts.begin(), o.model_counts.end());
  for (std::size_t i = 0; i < std::max<std::size_t>(most, 1); ++i)
    names.push_back("model-" + std::to_string(i));
  AEG_TRY_ASSIGN(auto plans,
                 actors::device_memory_needed(make_spec(o, "aegaeon", names), format,
                                              std::min(longest_tokens, config->context_length)));
  models::device_plan need;
  for (const auto& p : plans)
    if (p.total() > need.total())
      need = p;
  if ((o.device_mib << 20) < need.total())
    return tl::unexpected(models::does_not_fit(
        fmt::format("a device of --device-mib {}", o.device_mib), o.device_mib << 20, need,
        fmt::format("the KV is for one {}-token request of {}, in whole slabs; give --device-mib "
                    "{} or more",
                    longest_tokens, o.shape, models::mib_ceil(need.total()))));
  return config;
}

// "45 s", "12 min", "1.5 h": how long a plan takes, roughly.
std::string rough_time(double seconds) {
  if (seconds < 120)
    return fmt::format("{:.0f} s", seconds);
  if (seconds < 2 * 3600)
    return fmt::format("{:.0f} min", seconds / 60);
  return fmt::format("{:.1f} h", seconds / 3600);
}

// Removes the half-built images ("NAME.img.tmp.PID.N") that runs interrupted while building
// left in `dir` (a tmpfs holds them in memory until then). Files of live processes stay.
void remove_stale_images(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const auto at = name.find(".img.tmp.");
    if (at == std::string::npos)
      continue;
    const std::string rest = name.substr(at + 9);
    pid_t pid = 0;
    const auto [end, err] = std::from_chars(rest.data(), rest.data() + rest.size(), pid);
    if (err != std::errc{} || pid <= 0 || end == rest.data() + rest.size() || *end != '.')
      continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
      std::filesystem::remove(entry.path(), ec);
      if (!ec)
        fmt::print(stderr, "aegaeon bench: removed {}, left by an interrupted run\n",
                   entry.path().string());
    }
  }
}

// The JSON and CSV of the runs finished, and the figures drawn from that JSON; 0, or 1 when one
// could not be written.
int write_reports(const bench_options& o, const std::vector<run_result>& all, bool interrupted,
                  report_files& reports, const figure_place& figures) {
  nlohmann::json runs = nlohmann::json::array();
  if (reports.csv)
    *reports.csv << csv_header();
  for (const auto& r : all) {
    runs.push_back(to_json(r));
    if (reports.csv)
      *reports.csv << csv_row(r);
  }
  nlohmann::json doc = {{"devices", o.devices}, {"backend", o.backend}, {"shape", o.shape},
                        {"ttft_slo", o.ttft},   {"tbt_slo", o.tbt},     {"runs", runs}};
  if (interrupted)
    doc["interrupted"] = true; // the runs finished before Ctrl-C, not every one planned
  if (o.trace_path.empty()) {
    doc["rate_per_model"] = o.rate;
    doc["duration"] = o.duration;
  } else {
    doc["trace"] = o.trace_path;
  }
  if (reports.json)
    *reports.json << doc.dump(2) << "\n";
  if (auto closed = reports.close(); !closed) {
    fmt::print(stderr, "aegaeon bench: {}\n", closed.error().message);
    return 1;
  }
  return draw_report_figures(doc, figures, "aegaeon bench");
}

} // namespace

int run_bench(const bench_options& o) {
  if (o.prefill_devices >= 0 && static_cast<std::size_t>(o.prefill_devices) >= o.devices) {
    fmt::print(stderr,
               "aegaeon bench: --prefill-devices {} leaves no decode device of {}; use "
               "fewer, or 0 for colocated instances\n",
               o.prefill_devices, o.devices);
    return 2;
  }
  constexpr std::size_t max_prompt = 1024, max_output = 1024; // synthetic lengths are capped
  auto config = check_setup(o, max_prompt + max_output);
  if (!config) {
    fmt::print(stderr, "aegaeon bench: {}\n", config.error().message);
    return 2;
  }
  auto files = bench_files::open(o.json_path, o.csv_path, o.trace_path);
  const auto figures = figure_place::of(o.json_path, o.figures_dir);
  if (auto made = !files || o.figures_dir.empty() ? result<void>{} : figures.prepare(); !made)
    files = tl::unexpected(made.error());
  if (!files) {
    fmt::print(stderr, "aegaeon bench: {}\n", files.error().message);
    return 2;
  }
  // A trace names its own models: one pool size, the trace's.
  std::vector<std::size_t> counts = o.model_counts;
  std::vector<std::string> traced;
  auto& trace_file = files->trace;
  if (!o.trace_path.empty()) {
    // A request longer than the model's context could never finish: leave it out, and say so.
    const std::size_t before = trace_file.size();
    std::erase_if(trace_file, [&](const trace_request& r) {
      return r.prompt_tokens + r.output_tokens > config->context_length;
    });
    if (trace_file.empty()) {
      fmt::print(stderr,
                 "aegaeon bench: every request of the trace {} is longer than the {}-token "
                 "context of {}; shorten them or pick a larger --shape\n",
                 o.trace_path, config->context_length, o.shape);
      return 2;
    }
    if (trace_file.size() < before)
      fmt::print(stderr,
                 "aegaeon bench: warning: left out {} of {} requests of {}: longer than the "
                 "{}-token context of {}\n",
                 before - trace_file.size(), before, o.trace_path, config->context_length, o.shape);
    for (const auto& r : trace_file)
      if (std::find(traced.begin(), traced.end(), r.model) == traced.end())
        traced.push_back(r.model);
    counts = {traced.size()};
  }
  if (!o.shared_dir.empty())
    remove_stale_images(o.shared_dir);
  caf::actor_system_config cfg;
  actors::configure_runtime(cfg);
  caf::actor_system sys{cfg};
  std::vector<run_result> all;
  if (o.trace_path.empty())
    fmt::print("{} {} devices; {} per model at {:.3f} req/s for {:.0f} s; ", o.devices, o.backend,
               o.shape, o.rate, o.duration);
  else
    fmt::print("{} {} devices; {} per model, arrivals from {}; ", o.devices, o.backend, o.shape,
               o.trace_path);
  fmt::print("SLO TTFT {:.2f} s, TBT {:.3f} s\nattainment: mean share of each request's time on "
             "schedule (the paper's metric); tokens: share of tokens on time\n",
             o.ttft, o.tbt);
  // A run lasts its arrivals, then until its queues drain; models load before each.
  const double arrivals = o.trace_path.empty() ? o.duration : trace_file.back().arrival;
  const std::size_t num_runs = counts.size() * o.policies.size();
  fmt::print("{} run{} ({} model count{} x {} polic{}), each {} of arrivals and then until its "
             "queues drain: {} or more in all; Ctrl-C stops and reports the runs finished\n",
             num_runs, num_runs == 1 ? "" : "s", counts.size(), counts.size() == 1 ? "" : "s",
             o.policies.size(), o.policies.size() == 1 ? "y" : "ies", rough_time(arrivals),
             rough_time(arrivals * static_cast<double>(num_runs)));
  stop_on_interrupt("aegaeon bench: stopping; the runs finished will be reported (Ctrl-C again "
                    "quits at once)");
  bool interrupted = false;
  for (const std::size_t n : counts) {
    if (interrupted)
      break;
    std::vector<std::string> models = traced;
    for (std::size_t i = 0; models.size() < n; ++i)
      models.push_back("model-" + std::to_string(i));
    const std::vector<trace_request> trace = o.trace_path.empty() ? make_trace({models,
                                                                                o.rate,
                                                                                o.duration,
                                                                                o.prompt_mean,
                                                                                o.output_mean,
                                                                                max_prompt,
                                                                                max_output,
                                                                                o.seed,
                                                                                {}})
                                                                  : trace_file;
    fmt::print("\n{} models, {} requests\n{}", n, trace.size(), table_header());
    for (const auto& policy : o.policies) {
      auto r = run_one(sys, o, policy, models, trace);
      if (!r && r.error().code == errc::cancelled) {
        if (isatty(STDERR_FILENO) != 0)
          fmt::print(stderr, "\r\033[K"); // the progress line
        fmt::print(stderr, "aegaeon bench: interrupted; {} of {} runs finished\n", all.size(),
                   num_runs);
        interrupted = true;
        break;
      }
      if (!r) {
        fmt::print(stderr, "aegaeon bench: {}\n", r.error().message);
        return 1;
      }
      fmt::print("{}{}", table_row(*r), table_notes(*r));
      std::fflush(stdout);
      all.push_back(std::move(*r));
    }
  }
  // Goodput: the most models a policy served at 90% attainment or better.
  fmt::print("\ngoodput (most models with >= 90% attainment on {} devices{}):\n", o.devices,
             interrupted ? ", in the runs finished" : "");
  for (const auto& policy : o.policies) {
    const std::size_t best = goodput_models(all, policy);
    fmt::print("{:>14}: {} models ({:.2f} per device)\n", policy, best,
               static_cast<double>(best) / static_cast<double>(o.devices));
  }
  if (const int written = write_reports(o, all, interrupted, files->reports, figures); written != 0)
    return written;
  return interrupted ? 130 : 0; // as a shell reports a process that SIGINT ended
}

} // namespace aeg::apps
