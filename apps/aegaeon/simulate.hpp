#pragma once

#include <cstddef>
#include <cstdint>
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
};

/// Adds the `simulate` subcommand to `app`, its options writing into `o`.
CLI::App* add_simulate_command(CLI::App& app, simulate_options& o);

/// Runs the sweep; prints a table per cell and each policy's goodput; writes the reports.
int run_simulate(const simulate_options& o);

} // namespace aeg::apps
