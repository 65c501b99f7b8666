#include "apps/aegaeon/bench.hpp"

#include "actors/generation.hpp"
#include "actors/pool.hpp"
#include "apps/aegaeon/trace.hpp"

#include <caf/all.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <numeric>
#include <unistd.h>

namespace aeg::apps {

namespace {

using arrive_atom = caf::atom_constant<caf::atom("arrive")>;
using run_atom = caf::atom_constant<caf::atom("run")>;

struct run_result {
  std::string policy;
  std::size_t models = 0;
  std::size_t requests = 0, finished = 0, rejected = 0, failed = 0;
  std::size_t tokens_expected = 0, tokens_on_time = 0;
  double attainment = 0;       ///< mean over requests of time on schedule (rejected: 0)
  double token_attainment = 0; ///< tokens on time / tokens asked for (rejected count as late)
  double ttft_p50 = 0, ttft_p99 = 0, tbt_p99 = 0;
  std::size_t switches = 0;
  double seconds = 0;
};

// Replays the trace into the proxy at the trace's times (CAF's clock: no thread sleeps) and
// counts ends; answers `run` once every request has ended.
class client final : public caf::event_based_actor {
public:
  client(caf::actor_config& cfg, caf::actor proxy, std::vector<trace_request> trace)
      : caf::event_based_actor(cfg), proxy_(std::move(proxy)), trace_(std::move(trace)) {}

  caf::behavior make_behavior() override {
    return {
        [this](run_atom) -> caf::result<std::size_t> {
          done_ = make_response_promise<std::size_t>();
          for (std::size_t i = 0; i < trace_.size(); ++i)
            delayed_send(this,
                         std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::duration<double>(trace_[i].arrival)),
                         arrive_atom::value, i);
          if (trace_.empty())
            done_.deliver(std::size_t{0});
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
          r.sink = caf::actor_cast<caf::actor>(this);
          request(proxy_, caf::infinite, actors::submit_atom::value, std::move(r))
              .then([](std::uint64_t) {},
                    [this](caf::error&) {
                      ++rejected_;
                      ended();
                    });
        },
        [](actors::token_atom, std::uint64_t, std::int32_t) {},
        [this](actors::done_atom, const actors::generation_result&) { ended(); },
    };
  }

  std::size_t rejected() const { return rejected_; }

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
      done_.deliver(rejected_);
  }
  caf::actor proxy_;
  std::vector<trace_request> trace_;
  caf::response_promise done_;
  std::size_t ended_ = 0, rejected_ = 0;
};

actors::pool_spec make_spec(const bench_options& o, const std::string& policy,
                            const std::vector<std::string>& models) {
  actors::pool_spec s;
  for (std::size_t i = 0; i < o.devices; ++i)
    s.devices.push_back(
        {"d" + std::to_string(i), o.backend, static_cast<int>(i), o.device_mib << 20});
  for (std::size_t i = 0; i < models.size(); ++i) {
    actors::model_spec m;
    m.name = models[i];
    m.source.synthetic = o.shape;
    m.source.seed = 1 + i;
    m.ttft_seconds = o.ttft;
    m.tbt_seconds = o.tbt;
    s.models.push_back(m);
  }
  const std::size_t prefill = o.prefill_devices >= 0 ? static_cast<std::size_t>(o.prefill_devices)
                              : o.devices < 3        ? 0
                                                     : std::max<std::size_t>(1, o.devices * 3 / 8);
  for (std::size_t i = 0; i < o.devices; ++i) {
    actors::instance_spec is;
    is.device = "d" + std::to_string(i);
    is.max_batch_tokens = 1024;
    is.max_seqs = 32;
    if ((policy == "aegaeon" || policy == "fcfs") && prefill > 0)
      is.role = i < prefill ? actors::instance_role::prefill : actors::instance_role::decode;
    if (policy == "dedicated") {
      if (i >= models.size())
        continue;
      is.models = {models[i]};
    }
    s.instances.push_back(is);
  }
  s.policy.route = policy == "request_level" ? actors::routing::request_level
                   : policy == "dedicated"   ? actors::routing::dedicated
                                             : actors::routing::aegaeon;
  s.policy.max_group = policy == "fcfs" ? 1 : 8;
  s.policy.decode = "weighted_round_robin";
  s.shared_dir = o.shared_dir;
  s.host_kv_bytes = std::size_t{512} << 20;
  s.slab_bytes = std::size_t{16} << 20;
  return s;
}

run_result run_one(caf::actor_system& sys, const bench_options& o, const std::string& policy,
                   const std::vector<std::string>& models,
                   const std::vector<trace_request>& trace) {
  run_result res;
  res.policy = policy;
  res.models = models.size();
  res.requests = trace.size();
  auto p = actors::pool::start(sys, make_spec(o, policy, models));
  if (!p) {
    fmt::print(stderr, "aegaeon bench: {}: {}\n", policy, p.error().to_string());
    return res;
  }
  caf::scoped_actor self{sys}; // the driver waits here; the pool's actors never block
  auto c = sys.spawn<client>((*p)->proxy(), trace);
  const auto start = std::chrono::steady_clock::now();
  self->request(c, caf::infinite, run_atom::value)
      .receive([&](std::size_t rejected) { res.rejected = rejected; },
               [&](caf::error& e) { fmt::print(stderr, "aegaeon bench: {}\n", sys.render(e)); });
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  actors::pool_metrics m;
  self->request((*p)->proxy(), caf::infinite, actors::metrics_atom::value)
      .receive([&](const actors::pool_metrics& pm) { m = pm; }, [](caf::error&) {});
  for (const auto& inst : (*p)->instances())
    self->request(inst, caf::infinite, actors::stats_atom::value)
        .receive([&](const actors::instance_stats& s) { res.switches += s.switches; },
                 [](caf::error&) {});
  std::map<std::string, std::size_t> by_model; // expected output per request id, by model
  std::vector<double> ttfts, tbts, per_request;
  for (const auto& t : trace)
    res.tokens_expected += t.output_tokens;
  for (const auto& f : m.finished) {
    ++res.finished;
    if (f.reason == actors::finish_reason::error || f.reason == actors::finish_reason::unavailable)
      ++res.failed;
    res.tokens_on_time += f.tokens_on_time;
    per_request.push_back(f.time_attainment());
    if (!f.token_times.empty())
      ttfts.push_back(f.ttft());
    for (std::size_t k = 1; k < f.token_times.size(); ++k)
      tbts.push_back(f.token_times[k] - f.token_times[k - 1]);
  }
  for (std::size_t i = 0; i < res.rejected; ++i)
    per_request.push_back(0);
  res.token_attainment = res.tokens_expected == 0 ? 1.0
                                                  : static_cast<double>(res.tokens_on_time) /
                                                        static_cast<double>(res.tokens_expected);
  res.attainment = per_request.empty()
                       ? 1.0
                       : std::accumulate(per_request.begin(), per_request.end(), 0.0) /
                             static_cast<double>(per_request.size());
  res.ttft_p50 = percentile(ttfts, 0.5);
  res.ttft_p99 = percentile(ttfts, 0.99);
  res.tbt_p99 = percentile(tbts, 0.99);
  return res;
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
  caf::actor_system_config cfg;
  cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};
  std::vector<run_result> all;
  fmt::print(
      "{} {} devices; {} per model at {:.3f} req/s for {:.0f} s; SLO TTFT {:.2f} s, TBT "
      "{:.3f} s\nattainment: mean share of each request's time on schedule (the paper's metric); "
      "tokens: share of tokens on time\n",
      o.devices, o.backend, o.shape, o.rate, o.duration, o.ttft, o.tbt);
  // A trace names its own models: one pool size, the trace's.
  std::vector<std::size_t> counts = o.model_counts;
  std::vector<std::string> traced;
  if (!o.trace_path.empty()) {
    auto t = load_trace(o.trace_path);
    if (!t) {
      fmt::print(stderr, "aegaeon bench: {}\n", t.error().to_string());
      return 1;
    }
    for (const auto& r : *t)
      if (std::find(traced.begin(), traced.end(), r.model) == traced.end())
        traced.push_back(r.model);
    counts = {traced.size()};
  }
  for (const std::size_t n : counts) {
    std::vector<std::string> models = traced;
    for (std::size_t i = 0; models.size() < n; ++i)
      models.push_back("model-" + std::to_string(i));
    auto loaded = workload(o.trace_path, {models, o.rate, o.duration, o.prompt_mean, o.output_mean,
                                          1024, 1024, o.seed});
    if (!loaded) {
      fmt::print(stderr, "aegaeon bench: {}\n", loaded.error().to_string());
      return 1;
    }
    const std::vector<trace_request> trace = std::move(*loaded);
    fmt::print("\n{} models, {} requests\n{:>14} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n", n,
               trace.size(), "policy", "attainment", "tokens", "TTFT p50", "TTFT p99", "TBT p99",
               "switches", "rejected");
    for (const auto& policy : o.policies) {
      auto r = run_one(sys, o, policy, models, trace);
      fmt::print("{:>14} {:>9.1f}% {:>8.1f}% {:>8.2f}s {:>8.2f}s {:>8.3f}s {:>9} {:>9}\n", policy,
                 100 * r.attainment, 100 * r.token_attainment, r.ttft_p50, r.ttft_p99, r.tbt_p99,
                 r.switches, r.rejected);
      std::fflush(stdout);
      all.push_back(std::move(r));
    }
  }
  // Goodput: the most models a policy served at 90% attainment or better.
  fmt::print("\ngoodput (most models with >= 90% attainment on {} devices):\n", o.devices);
  for (const auto& policy : o.policies) {
    std::size_t best = 0;
    for (const auto& r : all)
      if (r.policy == policy && r.attainment >= 0.9)
        best = std::max(best, r.models);
    fmt::print("{:>14}: {} models ({:.2f} per device)\n", policy, best,
               static_cast<double>(best) / static_cast<double>(o.devices));
  }
  if (!o.json_path.empty() || !o.csv_path.empty()) {
    nlohmann::json runs = nlohmann::json::array();
    std::ofstream csv;
    if (!o.csv_path.empty()) {
      csv.open(o.csv_path);
      csv << "policy,models,requests,finished,rejected,failed,tokens_expected,tokens_on_time,"
             "attainment,token_attainment,ttft_p50,ttft_p99,tbt_p99,switches,seconds\n";
    }
    for (const auto& r : all) {
      runs.push_back({{"policy", r.policy},
                      {"models", r.models},
                      {"requests", r.requests},
                      {"finished", r.finished},
                      {"rejected", r.rejected},
                      {"failed", r.failed},
                      {"tokens_expected", r.tokens_expected},
                      {"tokens_on_time", r.tokens_on_time},
                      {"attainment", r.attainment},
                      {"token_attainment", r.token_attainment},
                      {"ttft_p50", r.ttft_p50},
                      {"ttft_p99", r.ttft_p99},
                      {"tbt_p99", r.tbt_p99},
                      {"switches", r.switches},
                      {"seconds", r.seconds}});
      if (csv)
        csv << fmt::format("{},{},{},{},{},{},{},{},{:.4f},{:.4f},{:.3f},{:.3f},{:.4f},{},{:.1f}\n",
                           r.policy, r.models, r.requests, r.finished, r.rejected, r.failed,
                           r.tokens_expected, r.tokens_on_time, r.attainment, r.token_attainment,
                           r.ttft_p50, r.ttft_p99, r.tbt_p99, r.switches, r.seconds);
    }
    if (!o.json_path.empty())
      std::ofstream(o.json_path)
          << nlohmann::json{{"devices", o.devices},   {"backend", o.backend},
                            {"shape", o.shape},       {"rate_per_model", o.rate},
                            {"duration", o.duration}, {"ttft_slo", o.ttft},
                            {"tbt_slo", o.tbt},       {"runs", runs}}
                 .dump(2)
          << "\n";
  }
  return 0;
}

} // namespace aeg::apps
