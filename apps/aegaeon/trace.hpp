#pragma once

#include "actors/trace_request.hpp"
#include "coro/error.hpp"

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace aeg::apps {

using actors::trace_request;

/// How to make a synthetic workload.
struct trace_options {
  std::vector<std::string> models;
  double rate_per_model = 0.1; ///< requests per second, Poisson, each model independently
  double duration = 60;        ///< seconds of arrivals
  double prompt_mean = 160;    ///< ShareGPT-like log-normal lengths, scaled to these means
  double output_mean = 250;
  std::size_t max_prompt = 1024, max_output = 1024;
  std::uint64_t seed = 1;
  std::vector<double> rates; ///< per model, in the order of `models`; empty: rate_per_model
};

/// Per-model Poisson arrivals with prompt and output lengths drawn from log-normal
/// distributions shaped like ShareGPT's (long tails, σ ≈ 1.0 for prompts and 0.8 for outputs),
/// sorted by arrival. Deterministic in the seed. Outputs are at least 16 tokens, as in the
/// paper's artifact.
std::vector<trace_request> make_trace(const trace_options& o);

/// Rates for `models` models, most requested first: the first at `max_rate`, model i > 0 at
/// min_rate + c / i, with c set so that the mean is `mean_rate` (the paper's market: 47 models,
/// 0.01 to 1.13 requests per second, mean 0.037). An error when no such c exists (the mean is
/// below what the first model alone and the others' minimum give, or needs a second model above
/// the first).
result<std::vector<double>> market_rates(std::size_t models, double min_rate, double mean_rate,
                                         double max_rate);

/// Reads a JSONL trace: one object per line with "arrival" (s), "model", "prompt_tokens",
/// "output_tokens". Errors name the line; a trace with no request is an error.
result<std::vector<trace_request>> load_trace(const std::string& path);

/// The p-quantile (0..1) of `v` by nearest rank; 0 for none.
double percentile(std::vector<double> v, double p);

/// Writes a trace as JSONL.
result<void> save_trace(const std::vector<trace_request>& trace, const std::string& path);

/// Opens `path` for writing (truncating it), so that a bad output path fails before a long run
/// rather than after it. `errc::unavailable` names the path and the system's reason.
result<std::ofstream> open_output(const std::string& path);

/// Flushes and closes `out`, opened on `path`; `errc::unavailable` when any write to it failed
/// (a full disk, /dev/full).
result<void> close_output(std::ofstream& out, const std::string& path);

/// A benchmark's JSON and CSV reports: each open when its path was given.
struct report_files {
  std::string json_path, csv_path;
  std::optional<std::ofstream> json, csv;

  /// Opens the reports whose paths are not empty, before the run.
  static result<report_files> open(std::string json_path, std::string csv_path);
  /// Closes both; the first write error, if any.
  result<void> close();
};

/// What a benchmark reads and writes, opened before it runs so that a bad path fails at once:
/// the reports, and the trace when a path is given (else none).
struct bench_files {
  report_files reports;
  std::vector<trace_request> trace;

  static result<bench_files> open(std::string json_path, std::string csv_path,
                                  const std::string& trace_path);
};

} // namespace aeg::apps
