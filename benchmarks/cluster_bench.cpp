// Serving through a worker's instance against a local one, in the same run: the same model, the
// same instance settings, the same batch of greedy requests submitted at once through a proxy,
// measured alternately. Reports each side's decode throughput (tokens/s at the batch), the mean
// time between a request's tokens, and the ratio remote/local (the goal: >= 0.9 at batch 16).
//
//   cluster_bench [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--batch 16] [--tokens 64]
//                 [--rounds 3] [--json out.json]
#include "actors/cluster.hpp"
#include "actors/pool.hpp"
#include "actors/runtime_config.hpp"
#include "tests/apps/child_process.hpp"

#include <CLI/CLI.hpp>
#include <caf/all.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

using namespace aeg;
using clock_type = std::chrono::steady_clock;

namespace {

struct round_result {
  double tokens_per_second = 0;
  double mean_gap_ms = 0; ///< between consecutive tokens of one request
};

// `batch` greedy requests of `tokens` tokens each, submitted at once to `proxy`.
round_result run_round(caf::actor_system& sys, const actors::proxy_actor& proxy,
                       const std::string& model, std::size_t batch, std::size_t tokens,
                       std::uint64_t first_id) {
  caf::scoped_actor self{sys};
  const auto start = clock_type::now();
  for (std::size_t i = 0; i < batch; ++i) {
    actors::generation_request r;
    r.id = first_id + i;
    r.model = model;
    for (std::size_t k = 0; k < 24; ++k)
      r.prompt.push_back(static_cast<std::int32_t>(100 + (k * 37 + i * 11) % 5000));
    r.max_tokens = tokens;
    r.sink = caf::actor_cast<actors::generation_sink>(self);
    self->request(proxy, caf::infinite, actors::submit_atom::value, r)
        .receive([](std::uint64_t) {},
                 [&](caf::error& e) { throw std::runtime_error(sys.render(e)); });
  }
  std::map<std::uint64_t, std::vector<clock_type::time_point>> times;
  std::size_t done = 0, count = 0;
  while (done < batch)
    self->receive(
        [&](actors::token_atom, std::uint64_t id, std::int32_t,
            const aeg::models::token_logprobs&) {
          times[id].push_back(clock_type::now());
          ++count;
        },
        [&](actors::done_atom, const actors::generation_result& res) {
          if (res.reason != actors::finish_reason::length)
            throw std::runtime_error("request ended with " +
                                     std::string(actors::to_string(res.reason)) + ": " +
                                     res.message);
          ++done;
        });
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  double gaps = 0;
  std::size_t n = 0;
  for (const auto& [id, t] : times)
    for (std::size_t k = 1; k < t.size(); ++k, ++n)
      gaps += std::chrono::duration<double, std::milli>(t[k] - t[k - 1]).count();
  return {static_cast<double>(count) / elapsed, n ? gaps / static_cast<double>(n) : 0};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"A worker's instance against a local one: decode throughput and token gaps"};
  std::string model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf", json_path;
  std::string binary = AEG_BINARY;
  std::size_t batch = 16, tokens = 64, rounds = 3;
  app.add_option("--model", model_path, "GGUF model")->capture_default_str();
  app.add_option("--batch", batch, "Requests at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--tokens", tokens, "Tokens each request generates")
      ->check(CLI::Range(2, 4096))
      ->capture_default_str();
  app.add_option("--rounds", rounds, "Rounds of each side, alternated; medians are reported")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--aegaeon", binary, "The aegaeon binary that runs the worker")
      ->capture_default_str();
  app.add_option("--json", json_path, "Also write the results here");
  CLI11_PARSE(app, argc, argv);
  if (!std::filesystem::exists(model_path)) {
    fmt::print(stderr, "cluster_bench: {} does not exist (scripts/fetch-model fetches it)\n",
               model_path);
    return 2;
  }
  const auto dir =
      std::filesystem::temp_directory_path() / ("aeg-cluster-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto key = (dir / "cluster.key").string();
  std::ofstream(key) << "bench\n";

  // One CPU device with one colocated instance, here and in the worker alike.
  actors::pool_spec local;
  local.devices.push_back({"cpu0", "cpu", 0, 0});
  actors::model_spec m;
  m.name = "model";
  m.source.model_path = std::filesystem::absolute(model_path).string();
  local.models.push_back(m);
  actors::instance_spec is;
  is.device = "cpu0";
  is.max_seqs = std::max<std::size_t>(batch, 64);
  local.instances.push_back(is);
  const auto topology = (dir / "node.json").string();
  std::ofstream(topology) << nlohmann::json{{"devices", {{{"name", "cpu0"}, {"backend", "cpu"}}}},
                                            {"models",
                                             {{{"name", "model"}, {"gguf", m.source.model_path}}}},
                                            {"instances",
                                             {{{"device", "cpu0"}, {"max_seqs", is.max_seqs}}}}}
                                 .dump();

  aeg::testing::child worker({binary, "worker", "--config", topology, "--cluster-key-file", key});
  const std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
  worker.await([&] {
    return std::regex_search(worker.err(), listening) ||
           worker.err().find("aegaeon worker: ") != std::string::npos;
  });
  std::smatch match;
  const auto err = worker.err();
  if (!std::regex_search(err, match, listening)) {
    fmt::print(stderr, "cluster_bench: the worker did not start: {}\n", err);
    return 1;
  }
  actors::pool_spec front;
  front.models = local.models;
  front.cluster_key_file = key;
  front.nodes.push_back({"127.0.0.1", static_cast<std::uint16_t>(std::stoi(match[1]))});

  caf::actor_system_config cfg;
  actors::configure_runtime(cfg);
  actors::enable_network(cfg);
  caf::actor_system sys{cfg};
  auto here = actors::pool::start(sys, local);
  auto there = actors::pool::start(sys, front);
  for (auto* p : {&here, &there})
    if (!*p || !(**p)->wait_started(sys)) {
      fmt::print(stderr, "cluster_bench: {}\n",
                 *p ? "an instance did not start" : (*p).error().to_string());
      return 1;
    }
  fmt::print("{}: batch {}, {} tokens each, {} rounds of each side alternated\n", model_path, batch,
             tokens, rounds);
  std::vector<double> local_tps, remote_tps, local_gap, remote_gap;
  std::uint64_t id = 1;
  try {
    run_round(sys, (*here)->proxy(), "model", batch, 4, id); // warm-up, both sides
    run_round(sys, (*there)->proxy(), "model", batch, 4, id += 100);
    for (std::size_t r = 0; r < rounds; ++r) {
      auto a = run_round(sys, (*here)->proxy(), "model", batch, tokens, id += 100);
      auto b = run_round(sys, (*there)->proxy(), "model", batch, tokens, id += 100);
      local_tps.push_back(a.tokens_per_second);
      local_gap.push_back(a.mean_gap_ms);
      remote_tps.push_back(b.tokens_per_second);
      remote_gap.push_back(b.mean_gap_ms);
      fmt::print("round {}: local {:.0f} tokens/s ({:.2f} ms between tokens), remote {:.0f} "
                 "tokens/s ({:.2f} ms)\n",
                 r + 1, a.tokens_per_second, a.mean_gap_ms, b.tokens_per_second, b.mean_gap_ms);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "cluster_bench: {}\n", e.what());
    return 1;
  }
  const double ratio = median(remote_tps) / median(local_tps);
  const double added = median(remote_gap) - median(local_gap);
  fmt::print("\nmedian: local {:.0f} tokens/s, remote {:.0f} tokens/s: remote/local {:.3f} "
             "(goal >= 0.9); added time between tokens {:+.2f} ms\n",
             median(local_tps), median(remote_tps), ratio, added);
  if (!json_path.empty())
    std::ofstream(json_path) << nlohmann::json{{"model", model_path},
                                               {"batch", batch},
                                               {"tokens", tokens},
                                               {"local_tokens_per_second", local_tps},
                                               {"remote_tokens_per_second", remote_tps},
                                               {"local_gap_ms", local_gap},
                                               {"remote_gap_ms", remote_gap},
                                               {"remote_over_local", ratio},
                                               {"added_gap_ms", added}}
                                    .dump(2)
                             << '\n';
  here->reset();
  there->reset();
  worker.signal(SIGINT);
  worker.wait();
  std::filesystem::remove_all(dir);
  return 0;
}
