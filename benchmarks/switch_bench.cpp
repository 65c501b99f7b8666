// The cost of switching a device from one model to another, in its parts, against the bound of
// the bytes it must move at the bandwidth measured in the same run.
//
//   switch_bench [--backend cpu|cuda] [--shapes smollm2-135m,llama-3.2-1b] [--half bf16|f16]
//                [--rounds 5] [--json FILE]
//
// Per model shape (synthetic weights): two models A and B of that shape; then
//   scale-up   B copied into the arena from the host cache (cold: nothing prefetched), until its
//              last byte is in; bound = image bytes / host-to-device bandwidth of one large copy;
//   first token after a cold switch, with the layers' copies overlapped with the first step, and
//              the same step once the model is resident (the step's own cost);
//   prefetched the switch when B was copied in during A's turn: activate, then a step;
//   swap       a batch of sequences' KV out to the host and back, against the same bandwidth.

#include "coro/sync_wait.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/registry.hpp"
#include "models/engine.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>

namespace {

using namespace aeg;
using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

void wait(gpu::event& ev) {
  coro::sync_wait([](gpu::event* e) -> coro::task<void> { co_await *e; }(&ev));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Host-to-device bandwidth of one large copy from pinned memory (best of a few).
double h2d_bandwidth(gpu::device& dev, std::size_t bytes) {
  auto host = dev.allocate_pinned(bytes);
  auto device = dev.allocate(bytes);
  auto stream = dev.create_stream();
  auto ev = dev.create_event();
  if (!host || !device || !stream || !ev)
    return 0;
  std::fill(host->as<std::byte>(), host->as<std::byte>() + bytes, std::byte{1});
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    const auto t = clock_type::now();
    (void)(*stream)->copy(device->data(), host->data(), bytes, gpu::copy_kind::host_to_device);
    (void)(*stream)->record(**ev);
    wait(**ev);
    best = std::max(best, static_cast<double>(bytes) / since(t));
  }
  return best;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Model switch time in its parts, against the bytes-over-bandwidth bound"};
  std::string backend = "cpu", shapes_arg = "smollm2-135m,llama-3.2-1b", half = "bf16", json_path;
  std::size_t rounds = 5, batch = 8, context = 512;
  app.add_option("--backend", backend, "cpu or cuda")->capture_default_str();
  app.add_option("--shapes", shapes_arg, "Synthetic model shapes, comma-separated")
      ->capture_default_str();
  app.add_option("--half", half, "CUDA weight type")->check(CLI::IsMember({"bf16", "f16"}));
  app.add_option("--rounds", rounds, "Timed switches per shape (medians)")->capture_default_str();
  app.add_option("--batch", batch, "Sequences whose KV is swapped")->capture_default_str();
  app.add_option("--context", context, "Tokens of KV per sequence")->capture_default_str();
  app.add_option("--json", json_path, "Also write the results here");
  CLI11_PARSE(app, argc, argv);

  std::vector<std::string> shapes;
  for (std::size_t pos = 0; pos < shapes_arg.size();) {
    const auto comma = shapes_arg.find(',', pos);
    shapes.push_back(shapes_arg.substr(pos, comma - pos));
    pos = comma == std::string::npos ? shapes_arg.size() : comma + 1;
  }
  auto dev = gpu::make_device({.backend = backend,
                               .ordinal = 0,
                               .capacity_bytes = backend == "cpu" ? std::size_t{6} << 30 : 0});
  if (!dev) {
    fmt::print(stderr, "switch_bench: {}\n", dev.error().to_string());
    return 1;
  }
  auto format = models::compute_format::for_backend((*dev)->kind());
  format.half_type = half == "f16" ? kernels::dtype::f16 : kernels::dtype::bf16;
  fmt::print("{}: switch costs, medians of {} rounds\n", (*dev)->name(), rounds);
  fmt::print("{:>14} {:>9} {:>9} {:>10} {:>8} {:>11} {:>11} {:>10} {:>10} {:>8}\n", "shape", "MiB",
             "GB/s", "scale-up", "vs bound", "1st token", "step alone", "prefetched", "KV swap",
             "vs bound");
  nlohmann::json results = nlohmann::json::array();
  for (const auto& shape : shapes) {
    auto cfg = models::llama_config::synthetic(shape);
    if (!cfg) {
      fmt::print(stderr, "switch_bench: {}\n", cfg.error().to_string());
      return 1;
    }
    cfg->context_length = std::min<std::size_t>(cfg->context_length, 4096);
    auto a = models::synthetic_llama(*cfg, format, **dev, 1);
    auto b = models::synthetic_llama(*cfg, format, **dev, 2);
    if (!a || !b) {
      fmt::print(stderr, "switch_bench: {}\n", (a ? b : a).error().to_string());
      return 1;
    }
    const std::size_t bytes = (*a)->bytes().size();
    const double bw = h2d_bandwidth(**dev, std::min<std::size_t>(bytes, std::size_t{1} << 30));
    const auto geometry = cfg->kv(format.kv_type());
    auto host_kv = std::make_shared<gpu::kv_pool>(
        std::move(*(*dev)->allocate_pinned(batch * kernels::kv_geometry::blocks_for(context) *
                                               geometry.block_bytes() * 2 +
                                           (std::size_t{64} << 20))),
        std::size_t{64} << 20);
    models::engine_options eo;
    eo.weight_bytes = 2 * bytes + 8192;
    eo.kv_bytes = batch * kernels::kv_geometry::blocks_for(context) * geometry.block_bytes() * 2 +
                  (std::size_t{64} << 20);
    eo.slab_bytes = std::size_t{64} << 20;
    eo.limits = {std::max<std::size_t>(batch, 64), batch, 0};
    auto e = models::engine::create(*dev, host_kv, *cfg, eo);
    if (!e) {
      fmt::print(stderr, "switch_bench: {}\n", e.error().to_string());
      return 1;
    }
    auto& eng = **e;
    // Sequences of B with `context` tokens of KV (contents do not matter for the timing).
    std::vector<models::kv_handle> kv(batch);
    std::vector<std::vector<std::int32_t>> tokens(batch, std::vector<std::int32_t>(1, 1));
    for (auto& k : kv) {
      (void)eng.reserve(k, geometry, context);
      k.tokens = context - 1;
    }
    std::vector<models::sequence_step> steps(batch);
    std::vector<models::kv_handle*> kvp;
    for (auto& k : kv)
      kvp.push_back(&k);
    auto decode_step = [&] {
      for (std::size_t s = 0; s < batch; ++s)
        steps[s] = {tokens[s], context - 1, kv[s].blocks, true, {}};
      (void)eng.enqueue_step(steps, kvp);
      wait(eng.step_done());
    };
    std::vector<double> up, first, alone, prefetched, swap;
    for (std::size_t r = 0; r < rounds; ++r) {
      // Start from A active and B nowhere.
      eng.deactivate();
      eng.unstage();
      (void)eng.stage(*a);
      eng.activate();
      wait(eng.active_ready());
      // Cold scale-up of B, to its last byte.
      auto t = clock_type::now();
      eng.deactivate();
      (void)eng.stage(*b);
      eng.activate();
      wait(eng.active_ready());
      up.push_back(since(t));
      // The step alone, B resident.
      t = clock_type::now();
      decode_step();
      alone.push_back(since(t));
      // Cold switch back to A and B's first token: layers compute as they arrive.
      eng.deactivate();
      (void)eng.stage(*a);
      eng.activate();
      wait(eng.active_ready());
      t = clock_type::now();
      eng.deactivate();
      (void)eng.stage(*b);
      eng.activate();
      decode_step();
      first.push_back(since(t));
      // Prefetched: A active, B copied in during A's turn; the switch, then B's step.
      eng.deactivate();
      (void)eng.stage(*a);
      eng.activate();
      (void)eng.stage(*b);
      wait(eng.staged_ready());
      t = clock_type::now();
      eng.activate();
      decode_step();
      prefetched.push_back(since(t));
      // KV of the batch out to the host and back.
      t = clock_type::now();
      for (auto& k : kv)
        (void)eng.swap_out(k);
      for (auto& k : kv)
        (void)eng.swap_in(k);
      for (auto& k : kv)
        wait(*k.ready);
      swap.push_back(since(t));
    }
    const double kv_bytes =
        2.0 * static_cast<double>(batch * kv[0].blocks.size() * geometry.block_bytes());
    const double up_m = median(up), first_m = median(first), alone_m = median(alone),
                 pre_m = median(prefetched), swap_m = median(swap);
    const double up_bound = static_cast<double>(bytes) / bw, swap_bound = kv_bytes / bw;
    fmt::print("{:>14} {:>9.0f} {:>9.1f} {:>8.1f}ms {:>7.2f}x {:>9.1f}ms {:>9.1f}ms {:>8.1f}ms "
               "{:>8.1f}ms {:>7.2f}x\n",
               shape, bytes / 1048576.0, bw / 1e9, up_m * 1e3, up_m / up_bound, first_m * 1e3,
               alone_m * 1e3, pre_m * 1e3, swap_m * 1e3, swap_m / swap_bound);
    results.push_back({{"shape", shape},
                       {"image_bytes", bytes},
                       {"h2d_bytes_per_s", bw},
                       {"scale_up_s", up_m},
                       {"scale_up_vs_bound", up_m / up_bound},
                       {"scale_up_overhead_s", up_m - up_bound},
                       {"first_token_after_cold_switch_s", first_m},
                       {"step_alone_s", alone_m},
                       {"prefetched_switch_and_step_s", pre_m},
                       {"kv_swap_bytes", kv_bytes},
                       {"kv_swap_out_and_in_s", swap_m},
                       {"kv_swap_vs_bound", swap_m / swap_bound}});
    for (auto& k : kv)
      eng.release(k);
  }
  if (!json_path.empty())
    std::ofstream(json_path)
        << nlohmann::json{{"device", (*dev)->name()}, {"results", results}}.dump(2) << "\n";
  return 0;
}
