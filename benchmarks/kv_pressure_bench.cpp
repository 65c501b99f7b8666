// What it costs when a batch's KV outgrows the device, against the same requests on an instance
// with room for all of it, measured in the same run:
//   roomy      the device KV pool holds every request's whole context;
//   split      it holds a share of that (--share) and the host pool the rest: the batch is split,
//              the overflow's KV waits on the host and decodes in turns of its own;
//   recompute  the same device pool and no host room: the overflow gives its KV back and is
//              recomputed from its tokens later.
// All three must produce the same greedy tokens; each is reported as its time over roomy's.
//
//   kv_pressure_bench [--backend cpu|cuda] [--shape smollm2-135m] [--requests 16]
//                     [--prompt 128] [--output 128] [--share 0.5] [--rounds 3]
//                     [--policy weighted_round_robin|round_robin] [--json FILE]

#include "actors/generation.hpp"
#include "actors/instance.hpp"
#include "actors/runtime_config.hpp"
#include "gpu/registry.hpp"
#include "models/llama/weights.hpp"

#include <CLI/CLI.hpp>
#include <caf/all.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>

namespace {

using namespace aeg;
using clock_type = std::chrono::steady_clock;

struct outcome {
  double seconds = 0;
  actors::instance_stats stats;
  std::map<std::uint64_t, std::vector<std::int32_t>> tokens;
  std::string error;
};

// Sends `reqs` to `inst` at once and gathers every token until each has ended.
outcome run(caf::scoped_actor& self, const actors::instance_actor& inst,
            std::vector<actors::generation_request> reqs) {
  outcome o;
  const auto t0 = clock_type::now();
  for (auto& r : reqs) {
    r.sink = caf::actor_cast<actors::generation_sink>(self);
    self->send(inst, actors::generate_atom::value, r);
  }
  // An instance that stops (one that could not start, say) ends no request: watch it.
  self->monitor(inst);
  std::size_t ended = 0;
  while (ended < reqs.size() && o.error.empty())
    self->receive([&](actors::token_atom, std::uint64_t id, std::int32_t token,
                      const aeg::models::token_logprobs&) { o.tokens[id].push_back(token); },
                  [&](actors::done_atom, const actors::generation_result& r) {
                    ++ended;
                    if (r.reason != actors::finish_reason::length && o.error.empty())
                      o.error = fmt::format("request {} ended with {}: {}", r.id,
                                            actors::to_string(r.reason), r.message);
                  },
                  [&](const caf::down_msg& d) {
                    o.error = "the instance stopped: " + self->system().render(d.reason);
                  });
  self->demonitor(inst.address());
  if (!o.error.empty())
    return o;
  o.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  self->request(inst, caf::infinite, actors::stats_atom::value)
      .receive([&](const actors::instance_stats& s) { o.stats = s; },
               [&](caf::error& e) { o.error = self->system().render(e); });
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"The cost of KV overflow: a split batch and recomputation against a roomy device"};
  std::string backend = "cpu", shape = "smollm2-135m", policy = "weighted_round_robin", json_path;
  std::size_t requests = 16, prompt = 128, output = 128, rounds = 3;
  double share = 0.5;
  app.add_option("--backend", backend, "cpu or cuda")->capture_default_str();
  app.add_option("--shape", shape, "Synthetic model shape")->capture_default_str();
  app.add_option("--requests", requests, "Requests sent at once")->capture_default_str();
  app.add_option("--prompt", prompt, "Prompt tokens per request")->capture_default_str();
  app.add_option("--output", output, "Tokens generated per request")->capture_default_str();
  app.add_option("--share", share, "Share of the batch's KV the tight device pool holds")
      ->check(CLI::Range(0.1, 0.9))
      ->capture_default_str();
  app.add_option("--rounds", rounds, "Timed runs per configuration (medians)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--policy", policy, "The instance's turn policy")
      ->check(CLI::IsMember({"weighted_round_robin", "round_robin"}))
      ->capture_default_str();
  app.add_option("--json", json_path, "Also write the results here");
  CLI11_PARSE(app, argc, argv);

  auto dev = gpu::make_device({.backend = backend,
                               .ordinal = 0,
                               .capacity_bytes = backend == "cpu" ? std::size_t{6} << 30 : 0});
  if (!dev) {
    fmt::print(stderr, "kv_pressure_bench: {}\n", dev.error().to_string());
    return 1;
  }
  auto cfg = models::llama_config::synthetic(shape);
  if (!cfg) {
    fmt::print(stderr, "kv_pressure_bench: {}\n", cfg.error().to_string());
    return 1;
  }
  if (prompt + output >= cfg->context_length) {
    fmt::print(stderr, "kv_pressure_bench: {} + {} tokens exceed the context of {}\n", prompt,
               output, cfg->context_length);
    return 1;
  }
  const auto format = models::compute_format::for_backend((*dev)->kind());
  auto image = models::synthetic_llama(*cfg, format, **dev, 1);
  if (!image) {
    fmt::print(stderr, "kv_pressure_bench: {}\n", image.error().to_string());
    return 1;
  }
  const std::size_t block = cfg->kv(format.kv_type()).block_bytes();
  const std::size_t slab = 4 * block; // fine slabs: the tight pool is exactly the share asked
  const std::size_t need = requests * kernels::kv_geometry::blocks_for(prompt + output) * block;
  const std::size_t tight = std::max<std::size_t>(
      static_cast<std::size_t>(static_cast<double>(need) * share) / slab * slab, slab);
  actors::instance_options base;
  base.max_batch_tokens = 256;
  base.max_seqs = requests;
  base.slab_bytes = slab;
  base.policy = [policy] { return sched::make_switch_policy(policy, sched::seconds{4}, 16); };
  auto roomy = base, split = base, recompute = base;
  roomy.kv_bytes = need + 4 * slab;
  roomy.host_kv_bytes = block; // less than a slab: no host room at all
  split.kv_bytes = tight;
  split.host_kv_bytes = 2 * need;
  recompute.kv_bytes = tight;
  recompute.host_kv_bytes = block;

  caf::actor_system_config sys_cfg;
  actors::configure_runtime(sys_cfg);
  caf::actor_system sys(sys_cfg);
  caf::scoped_actor self(sys);
  const std::vector<std::pair<std::string, actors::instance_options>> configs = {
      {"roomy", roomy}, {"split", split}, {"recompute", recompute}};
  std::vector<actors::instance_actor> instances;
  for (const auto& [name, o] : configs)
    instances.push_back(actors::spawn_instance(sys, *dev, *image, o));

  auto make_requests = [&](std::uint64_t first_id) {
    std::vector<actors::generation_request> reqs;
    for (std::size_t i = 0; i < requests; ++i) {
      actors::generation_request r;
      r.id = first_id + i;
      for (std::size_t k = 0; k < prompt; ++k)
        r.prompt.push_back(static_cast<std::int32_t>((k * 2654435761u + i * 97u) % 30000 + 100));
      r.max_tokens = output;
      reqs.push_back(std::move(r));
    }
    return reqs;
  };
  // A warm-up request per instance: start-up (engine, buffers) is not part of the measure.
  for (auto& inst : instances) {
    auto warm = make_requests(1'000'000);
    warm.resize(1);
    warm[0].max_tokens = 2;
    if (auto o = run(self, inst, warm); !o.error.empty()) {
      fmt::print(stderr, "kv_pressure_bench: {}\n", o.error);
      return 1;
    }
  }

  fmt::print("{}: {} requests of {} + {} tokens, {} of KV; tight pools hold {:.0f}%, medians of "
             "{} rounds\n",
             (*dev)->name(), requests, prompt, output,
             fmt::format("{:.1f} MiB", static_cast<double>(need) / (1 << 20)),
             100.0 * static_cast<double>(tight) / static_cast<double>(need), rounds);
  fmt::print("{:>10} {:>9} {:>8} {:>9} {:>7} {:>11} {:>10} {:>12}\n", "config", "seconds",
             "vs roomy", "tokens/s", "steps", "split off", "recomputed", "MiB swapped");
  std::map<std::string, std::vector<double>> seconds;
  std::map<std::string, actors::instance_stats> last;
  std::map<std::uint64_t, std::vector<std::int32_t>> reference;
  bool same_tokens = true;
  for (std::size_t round = 0; round < rounds; ++round)
    for (std::size_t c = 0; c < configs.size(); ++c) {
      const auto before = run(self, instances[c], {}).stats; // counters so far
      auto o = run(self, instances[c], make_requests(round * 1000));
      if (!o.error.empty()) {
        fmt::print(stderr, "kv_pressure_bench: {}: {}\n", configs[c].first, o.error);
        return 1;
      }
      if (c == 0 && round == 0)
        reference = o.tokens;
      for (const auto& [id, t] : o.tokens)
        same_tokens = same_tokens && reference[id % 1000] == t;
      seconds[configs[c].first].push_back(o.seconds);
      auto s = o.stats;
      s.steps -= before.steps;
      s.batch_splits -= before.batch_splits;
      s.preemptions -= before.preemptions;
      s.kv_bytes_swapped -= before.kv_bytes_swapped;
      last[configs[c].first] = s;
    }
  nlohmann::json results = nlohmann::json::array();
  const double base_s = median(seconds["roomy"]);
  for (const auto& [name, o] : configs) {
    const double s = median(seconds[name]);
    const auto& st = last[name];
    const double tokens = static_cast<double>(requests * output);
    fmt::print("{:>10} {:>9.2f} {:>7.2f}x {:>9.1f} {:>7} {:>11} {:>10} {:>12.1f}\n", name, s,
               s / base_s, tokens / s, st.steps, st.batch_splits, st.preemptions,
               static_cast<double>(st.kv_bytes_swapped) / (1 << 20));
    results.push_back({{"config", name},
                       {"seconds", s},
                       {"vs_roomy", s / base_s},
                       {"tokens_per_second", tokens / s},
                       {"steps", st.steps},
                       {"batch_splits", st.batch_splits},
                       {"preemptions", st.preemptions},
                       {"kv_bytes_swapped", st.kv_bytes_swapped}});
  }
  fmt::print("same greedy tokens in every configuration: {}\n", same_tokens ? "yes" : "NO");
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << nlohmann::json{{"device", (*dev)->name()}, {"requests", requests}, {"prompt", prompt},
                          {"output", output},         {"share", share},       {"policy", policy},
                          {"results", results}}
               .dump(2)
        << "\n";
  }
  for (auto& inst : instances)
    caf::anon_send_exit(inst, caf::exit_reason::user_shutdown);
  return same_tokens ? 0 : 1;
}
