#include "apps/aegaeon/profile.hpp"

#include "apps/aegaeon/cli_number.hpp"
#include "apps/aegaeon/switch_history.hpp"
#include "apps/aegaeon/trace.hpp"
#include "coro/sync_wait.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/registry.hpp"
#include "gpu/sim/sim_profile.hpp"
#include "kernels/cpu/parallel.hpp"
#include "models/engine.hpp"
#include "models/llama/config.hpp"
#include "models/llama/weights.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>

namespace aeg::apps {

namespace {

using clock_type = std::chrono::steady_clock;

// A measuring tool, not the serving path: it waits for the device by blocking.
void wait(gpu::event& ev) {
  coro::sync_wait([](gpu::event* e) -> coro::task<void> { co_await *e; }(&ev));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times `fn` (which enqueues and waits) `rounds` times; the median in seconds.
template <class Fn>
double timed(std::size_t rounds, Fn&& fn) {
  std::vector<double> t;
  for (std::size_t r = 0; r < rounds; ++r) {
    const auto start = clock_type::now();
    fn();
    t.push_back(std::chrono::duration<double>(clock_type::now() - start).count());
  }
  return median(std::move(t));
}

// The measurements behind one profile, and the device they ran on.
class profiler {
public:
  profiler(models::engine& e, std::shared_ptr<const models::model_image> image, std::size_t rounds)
      : e_(e), image_(std::move(image)), rounds_(rounds),
        geometry_(image_->config().kv(image_->format().kv_type())) {}

  // Seconds to copy the image in, cold, to its last byte.
  double scale_up() {
    return timed(rounds_, [&] {
      e_.deactivate();
      e_.unstage();
      (void)e_.scale_up(image_);
      wait(e_.active_ready());
    });
  }

  // Whether `seqs` sequences of `tokens` tokens fit the device's KV pool at once.
  bool fits(std::size_t seqs, std::size_t tokens) const {
    return seqs * kernels::kv_geometry::blocks_for(tokens) <= e_.kv_capacity(geometry_);
  }

  // One step of `seqs` sequences reading `feed` tokens each after `past` stored ones.
  double step(std::size_t seqs, std::size_t feed, std::size_t past) {
    std::vector<models::kv_handle> kv(seqs);
    for (auto& k : kv)
      value_or_throw(e_.reserve(k, geometry_, past + feed));
    const std::vector<std::int32_t> tokens(feed, 100);
    std::vector<models::sequence_step> steps;
    std::vector<models::kv_handle*> kvp;
    for (auto& k : kv) {
      steps.push_back({tokens, past, k.blocks, true, {}});
      kvp.push_back(&k);
    }
    const double s = timed(rounds_, [&] {
      value_or_throw(e_.enqueue_step(steps, kvp));
      wait(e_.step_done());
    });
    for (auto& k : kv)
      e_.release(k);
    e_.reclaim();
    return s;
  }

  // Bytes per second of `seqs` sequences' KV of `tokens` tokens out to the host.
  double swap_out_rate(std::size_t seqs, std::size_t tokens) {
    std::vector<double> rates;
    for (std::size_t r = 0; r < rounds_; ++r) {
      std::vector<models::kv_handle> kv(seqs);
      std::size_t bytes = 0;
      for (auto& k : kv) {
        value_or_throw(e_.reserve(k, geometry_, tokens));
        bytes += k.blocks.size() * k.block_bytes();
      }
      wait(e_.step_done());
      const auto start = clock_type::now();
      for (auto& k : kv)
        value_or_throw(e_.swap_out(k));
      for (auto& k : kv)
        wait(*k.ready);
      rates.push_back(static_cast<double>(bytes) /
                      std::chrono::duration<double>(clock_type::now() - start).count());
      for (auto& k : kv)
        e_.release(k);
      e_.reclaim();
    }
    return median(std::move(rates));
  }

private:
  models::engine& e_;
  std::shared_ptr<const models::model_image> image_;
  std::size_t rounds_;
  kernels::kv_geometry geometry_;
};

// The median of the cold (not prefetched) scale-ups that a pool's run on this device logged
// (`aegaeon bench --in-process --json`). Less the engine's own scale-up, it is the fixed cost of
// a switch as the pool paid it: the engine's own scale-up, timed alone, misses what a pool adds
// around it (the other devices' steps and the stream workers' hand-offs on the same cores).
result<double> median_cold_scale_up(const profile_options& o) {
  const auto& path = o.switches_from;
  std::ifstream in(path);
  if (!in)
    return fail(errc::not_found, "--switches-from: cannot read '" + path + "'");
  const auto doc = nlohmann::json::parse(in, nullptr, false);
  const auto not_a_run = [&] {
    return fail(errc::invalid_argument,
                "--switches-from: '" + path +
                    "' is not the JSON of `aegaeon bench --in-process --json`");
  };
  if (!doc.is_object() || !doc.contains("runs") || !doc["runs"].is_array() ||
      !doc.contains("backend") || !doc["backend"].is_string() || !doc.contains("shape") ||
      !doc["shape"].is_string())
    return not_a_run();
  const auto backend = doc["backend"].get<std::string>(), shape = doc["shape"].get<std::string>();
  if (backend != o.backend || shape != o.shape)
    return fail(errc::invalid_argument,
                "--switches-from: '" + path + "' ran " + backend + " devices serving " + shape +
                    "; the profile measures " + o.backend + " serving " + o.shape +
                    " (run the bench with the same --backend and --shape)");
  std::vector<double> cold;
  try { // the switch log as the bench writes it (switch_history's JSON)
    for (const auto& run : doc["runs"])
      if (run.contains("timeline"))
        for (const auto& instance : run["timeline"].at("instances"))
          for (const auto& sw : switches_from_json(instance).switches)
            if (!sw.prefetched && sw.scale_up_seconds > 0)
              cold.push_back(sw.scale_up_seconds);
  } catch (const nlohmann::json::exception&) {
    return not_a_run();
  }
  constexpr std::size_t enough = 5;
  if (cold.size() < enough)
    return fail(errc::invalid_argument,
                "--switches-from: '" + path + "' logs " + std::to_string(cold.size()) +
                    " cold scale-up" + (cold.size() == 1 ? "" : "s") + "; at least " +
                    std::to_string(enough) +
                    " are needed to take a cost from (run the bench with more models or longer)");
  return median(std::move(cold));
}

std::string today() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::gmtime(&t));
  return buf;
}

} // namespace

int run_profile(const profile_options& o) {
  auto config = models::llama_config::synthetic(o.shape);
  if (!config) {
    fmt::print(stderr, "aegaeon profile: --shape: {}\n", config.error().message);
    return 2;
  }
  const std::string out_path =
      o.out_path.empty() ? fmt::format("profile-{}-{}.json", o.backend, o.shape) : o.out_path;
  // The run is read before the output is opened: writing the profile over it (or over a
  // good profile) must not happen for a run that is then refused.
  std::optional<double> cold_scale_up;
  if (!o.switches_from.empty()) {
    std::error_code same_error;
    if (std::filesystem::equivalent(o.switches_from, out_path, same_error)) {
      fmt::print(stderr, "aegaeon profile: --switches-from and --out name the same file '{}'\n",
                 out_path);
      return 2;
    }
    auto cold = median_cold_scale_up(o);
    if (!cold) {
      fmt::print(stderr, "aegaeon profile: {}\n", cold.error().message);
      return 2;
    }
    cold_scale_up = *cold;
  }
  auto out = open_output(out_path);
  if (!out) {
    fmt::print(stderr, "aegaeon profile: {}\n", out.error().message);
    return 2;
  }
  auto dev = gpu::make_device(
      {.backend = o.backend, .ordinal = o.ordinal, .capacity_bytes = o.memory_mib << 20});
  if (!dev) {
    fmt::print(stderr, "aegaeon profile: {}\n", dev.error().message);
    return 2;
  }
  constexpr std::size_t max_tokens = 1024, max_seqs = 32, max_context = 1024;
  config->context_length = std::min(config->context_length, max_context + 16);
  const auto format = models::compute_format::for_backend((*dev)->kind());
  fmt::print(stderr, "aegaeon profile: {} serving {} (synthetic weights)\n", (*dev)->name(),
             o.shape);
  auto image = models::synthetic_llama(*config, format, **dev, 1);
  if (!image) {
    fmt::print(stderr, "aegaeon profile: {}\n", image.error().message);
    return 1;
  }
  const auto geometry = config->kv(format.kv_type());
  // The host pool takes what the swap measurement moves; the device's KV the memory left.
  const std::size_t kv_bytes =
      8 * kernels::kv_geometry::blocks_for(256) * geometry.block_bytes() + (std::size_t{64} << 20);
  models::engine_options eo;
  eo.weight_bytes = (*image)->bytes().size() + 8192;
  eo.slab_bytes = std::max<std::size_t>(std::size_t{16} << 20, 4 * geometry.block_bytes());
  eo.limits = {max_tokens, max_seqs, 0};
  auto host = (*dev)->allocate_pinned(kv_bytes);
  if (!host) {
    fmt::print(stderr, "aegaeon profile: {}\n", host.error().message);
    return 1;
  }
  auto host_kv = std::make_shared<gpu::kv_pool>(std::move(*host), eo.slab_bytes);
  auto e = models::engine::create(*dev, host_kv, *config, eo);
  if (!e) {
    fmt::print(stderr, "aegaeon profile: {}\n", e.error().message);
    return 1;
  }
  gpu::sim_profile p;
  p.name = o.name.empty() ? (*dev)->name() : o.name;
  p.memory_bytes = (*dev)->capacity_bytes();
  p.weight_layout = (*dev)->kind() == gpu::backend_kind::cpu ? "cpu" : "half";
  p.shared_compute = (*dev)->kind() == gpu::backend_kind::cpu; // CPU devices share the cores
  if (p.shared_compute) // a CPU copy is one thread's memcpy beside the kernels' threads
    p.copy_compute_share = 1.0 / static_cast<double>(kernels::cpu::num_compute_threads());
  try {
    profiler m(**e, *image, o.rounds);
    fmt::print(stderr, "  scale-ups ...\n");
    const double up = m.scale_up();
    p.h2d_bytes_per_second = static_cast<double>((*image)->bytes().size()) / up;
    fmt::print(stderr, "  KV swaps ...\n");
    p.d2h_bytes_per_second = m.swap_out_rate(8, 256);
    if (cold_scale_up) // what the pool's scale-ups took beyond the engine's own
      p.switch_seconds = std::max(0.0, *cold_scale_up - up);
    std::vector<gpu::cost_sample> prefill, decode;
    fmt::print(stderr, "  prefill steps ...\n");
    std::size_t skipped = 0;
    for (const std::size_t len : {16, 32, 64, 128, 256, 512, 1024}) {
      const auto n = static_cast<double>(len);
      if (!m.fits(2, len)) {
        ++skipped;
        continue;
      }
      prefill.push_back({n, n * n, m.step(1, len, 0)});
      if (len >= 64) // two prompts of half the length: the same tokens, half the pairs
        prefill.push_back({n, n * n / 2, m.step(2, len / 2, 0)});
    }
    fmt::print(stderr, "  decode steps ...\n");
    for (const std::size_t batch : {1, 2, 4, 8, 16, 32})
      for (const std::size_t context : {32, 128, 512, 1024}) {
        const auto b = static_cast<double>(batch);
        if (!m.fits(batch, context)) {
          ++skipped;
          continue;
        }
        decode.push_back({b * static_cast<double>(context), b, m.step(batch, 1, context - 1)});
      }
    if (skipped > 0)
      fmt::print(stderr, "  {} points left out: their KV does not fit the device's memory\n",
                 skipped);
    if (prefill.size() < 6 || decode.size() < 6) {
      fmt::print(stderr,
                 "aegaeon profile: too few points fit {} MiB to fit the step times; give "
                 "--memory-mib more\n",
                 o.memory_mib);
      return 1;
    }
    auto pf = gpu::fit_relative(prefill), df = gpu::fit_relative(decode);
    if (!pf || !df) {
      fmt::print(stderr, "aegaeon profile: {}\n", (!pf ? pf : df).error().message);
      return 1;
    }
    p.models[o.shape] = {*pf, *df,
                         fmt::format("least squares of relative error over {} prefill and {} "
                                     "decode steps measured on {}; the worst step is {:.0f}% "
                                     "off (prefill) and {:.0f}% off (decode)",
                                     prefill.size(), decode.size(), p.name,
                                     100 * gpu::worst_relative_error(*pf, prefill),
                                     100 * gpu::worst_relative_error(*df, decode))};
  } catch (const std::exception& ex) {
    fmt::print(stderr, "aegaeon profile: a measurement failed: {}\n", ex.what());
    return 1;
  }
  p.source = fmt::format("Measured by `aegaeon profile --backend {} --shape {}` on {}, {}: copy "
                         "rates from scale-ups and KV swap-outs{}, step fits from medians of "
                         "{} runs per point. The roofline fields are defaults, used only for "
                         "shapes without a fit.",
                         o.backend, o.shape, (*dev)->name(), today(),
                         o.switches_from.empty()
                             ? std::string()
                             : ", the fixed switch cost from the cold scale-ups a pool logged (" +
                                   o.switches_from + ")",
                         o.rounds);
  *out << gpu::to_json(p);
  if (auto closed = close_output(*out, out_path); !closed) {
    fmt::print(stderr, "aegaeon profile: {}\n", closed.error().message);
    return 1;
  }
  const auto& f = p.models[o.shape];
  if (!o.switches_from.empty())
    fmt::print("{}: a pool's switch costs {:.1f} ms beside its copy\n", p.name,
               p.switch_seconds * 1e3);
  fmt::print("{}: scale-up {:.2f} GB/s, swap-out {:.2f} GB/s\n  prefill {:.4f} s + {:.3g} s/token "
             "+ {:.3g} s/token pair\n  decode {:.4f} s + {:.3g} s/context token + {:.3g} "
             "s/sequence\nwritten to {}\n",
             p.name, p.h2d_bytes_per_second / 1e9, p.d2h_bytes_per_second / 1e9, f.prefill.a,
             f.prefill.b, f.prefill.c, f.decode.a, f.decode.b, f.decode.c, out_path);
  return 0;
}

CLI::App* add_profile_command(CLI::App& app, profile_options& o) {
  auto* cmd = app.add_subcommand(
      "profile", "Measure a device serving one model shape and write the simulator's profile "
                 "of it (for `aegaeon simulate --profile`)");
  cmd->add_option("--backend", o.backend, "Device backend")
      ->check(CLI::IsMember(gpu::built_backends()))
      ->capture_default_str();
  cmd->add_option("--ordinal", o.ordinal, "Which device of the backend")
      ->check(number({.lo = 0, .hi = 1024, .integer = true}))
      ->capture_default_str();
  cmd->add_option("--shape", o.shape, "Synthetic model shape to measure")
      ->check(CLI::IsMember(models::llama_config::synthetic_shapes()))
      ->capture_default_str();
  cmd->add_option("--name", o.name, "The profile's name (default: the device's)");
  cmd->add_option("--memory-mib", o.memory_mib,
                  "Device memory (cpu: its budget; cuda: 0 takes what is free)")
      ->check(number({.lo = 0, .hi = 1 << 24, .integer = true}))
      ->capture_default_str();
  cmd->add_option("--rounds", o.rounds, "Timings per point; the median counts")
      ->check(number({.lo = 1, .hi = 100, .integer = true}))
      ->capture_default_str();
  cmd->add_option("--out", o.out_path, "Where to write it (default profile-BACKEND-SHAPE.json)");
  cmd->add_option("--switches-from", o.switches_from,
                  "Take the fixed cost of a switch from a pool's run on this device (the JSON of "
                  "`aegaeon bench --in-process`): its median cold scale-up less the copy")
      ->check(CLI::ExistingFile);
  return cmd;
}

} // namespace aeg::apps
