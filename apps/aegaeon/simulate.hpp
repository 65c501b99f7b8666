#pragma once

#include "actors/pool_metrics.hpp"
#include "actors/topology.hpp"
#include "actors/trace_request.hpp"
#include "coro/error.hpp"
#include "gpu/sim/sim_profile.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace aeg::apps {

/// Settings of `aegaeon simulate`: the pool run in virtual time on simulated GPUs, swept over
/// model counts, rates and SLO scales under each policy, as the paper's figures are.
struct simulate_options {
  std::string profile_path = "profiles/h800.json";
  std::size_t devices = 16;
  std::size_t prefill_devices = 6; ///< aegaeon and fcfs; 0: colocated instances
  /// Machines the devices split into evenly, and which serve each model ("pooled": all;
  /// "partitioned": model i on node i mod nodes). See node_placement.hpp.
  std::size_t nodes = 1;
  std::string placement = "pooled";
  /// Model shapes and their shares, "shape:count,...": model i takes slot i mod the total.
  std::string mix = "qwen2.5-7b:6,yi-9b:2,llama-2-13b:2";
  std::vector<std::size_t> model_counts = {16, 32, 48, 64, 80};
  std::vector<double> rates = {0.1};    ///< requests per second per model
  std::vector<double> slo_scales = {1}; ///< factors on --ttft and --tbt
  std::vector<std::string> policies = {"aegaeon", "serverless_llm", "serverless_llm_plus",
                                       "dedicated"};
  double duration = 600; ///< seconds of arrivals
  double ttft = 10, tbt = 0.1;
  std::string dataset = "sharegpt";        ///< sharegpt, ix2 (inputs ×2) or ox2 (outputs ×2)
  double prompt_mean = 0, output_mean = 0; ///< override the dataset's mean lengths (0: keep)
  std::size_t host_kv_mib = 512 << 10;     ///< the node's host KV pool
  std::size_t slab_mib = 64;               ///< KV slabs (raised to hold 4 of the largest block)
  std::size_t max_batch_tokens = 4096, max_seqs = 128;
  double max_quota = 4; ///< the weighted round-robin's Q_MAX, seconds
  std::uint64_t seed = 1;
  std::string trace_path; ///< a JSONL trace instead of synthetic arrivals
  std::string json_path, csv_path, svg_path;
  std::string figures_dir; ///< where every figure goes; empty: beside json_path, named after it
  /// The production scenario instead of a sweep: this many models with skewed rates, and the
  /// fewest devices (up to market_devices) each policy needs at 90% attainment. 0: a sweep.
  std::size_t market = 0;
  double market_min_rate = 0.01, market_mean_rate = 0.037, market_max_rate = 1.13;
  std::size_t market_devices = 64;
  /// Where latency goes, scale-up and KV-sync CDFs and active models against E[m] for each of
  /// `setups` ("16x0.1": models x requests per second per model) instead of a sweep.
  bool breakdown = false;
  std::vector<std::string> setups = {"16x0.1", "32x0.1", "64x0.1", "16x0.5", "32x0.5"};
};

struct run_result;

/// The models of a simulated pool: `names`, shapes from `mix_slots` (model i takes slot i mod
/// their number), SLOs of `o` times `slo_scale`; `context` is set to the smallest context.
std::vector<actors::model_spec> sim_models(const simulate_options& o,
                                           const std::vector<std::string>& mix_slots,
                                           const std::vector<std::string>& names, double slo_scale,
                                           std::size_t& context);

/// One cell: the pool of `policy` on `o.devices` simulated devices (`o.prefill_devices` of them
/// prefill-only where the policy has them) for `models`, `trace` replayed into it in virtual
/// time, with progress on a terminal. `finished`, when given, receives every finished
/// request's metrics.
result<run_result> simulate_cell(const simulate_options& o,
                                 const std::shared_ptr<const gpu::sim_profile>& profile,
                                 const std::string& policy,
                                 const std::vector<actors::model_spec>& models,
                                 const std::vector<actors::trace_request>& trace, double duration,
                                 std::vector<actors::request_metrics>* finished = nullptr);

/// Adds the `simulate` subcommand to `app`, its options writing into `o`.
CLI::App* add_simulate_command(CLI::App& app, simulate_options& o);

/// Runs the sweep; prints a table per cell and each policy's goodput; writes the reports.
int run_simulate(const simulate_options& o);

} // namespace aeg::apps
