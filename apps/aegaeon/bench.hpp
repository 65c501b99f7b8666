#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace aeg::apps {

/// Settings of `aegaeon bench --in-process`: replay per-model Poisson traces on pools of CPU (or
/// CUDA) devices under each policy, with equal devices, and report SLO attainment and goodput.
struct bench_options {
  std::vector<std::size_t> model_counts = {2, 4, 6};
  std::vector<std::string> policies = {"aegaeon", "request_level", "dedicated", "fcfs"};
  std::size_t devices = 4;
  /// aegaeon and fcfs: devices that only prefill; the rest decode. -1 picks the paper's 3 in 8
  /// (at least 1) from 3 devices up and colocated instances below; 0 makes every instance
  /// colocated (prefill and decode on one device, as on a single-GPU host).
  int prefill_devices = -1;
  std::string backend = "cpu";
  std::size_t device_mib = 768;
  std::string shape = "smollm2-135m";
  double rate = 0.1;    ///< requests per second per model
  double duration = 60; ///< seconds of arrivals
  double prompt_mean = 64, output_mean = 64;
  double ttft = 5, tbt = 0.5; ///< SLOs (scaled to what two CPU cores can do)
  std::uint64_t seed = 1;
  std::string trace_path; ///< a JSONL trace instead of synthetic arrivals
  std::string json_path, csv_path;
  /// Where the figures go; empty: beside json_path, named after it (none without either).
  std::string figures_dir;
  std::string shared_dir = "/dev/shm/aegaeon-bench"; ///< where model images are kept across runs

  // Against a running server (`--url`):
  std::string url;
  std::string api_key;
  std::vector<std::string> model_names; ///< empty: every model the server lists
  std::vector<double> rates;            ///< requests per second per model, one run each
  std::size_t max_connections = 256;    ///< requests in flight at once; later ones wait
};

/// Runs the experiment; prints a table per model count and the goodput of each policy.
int run_bench(const bench_options& options);

} // namespace aeg::apps
