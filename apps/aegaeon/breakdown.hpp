#pragma once

#include "apps/aegaeon/report_figures.hpp"
#include "apps/aegaeon/simulate.hpp"
#include "apps/aegaeon/trace.hpp"

#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// `aegaeon simulate --breakdown`: the paper's Fig. 14 (where a request's latency goes), Fig. 15
// (scale-up and KV-sync CDFs) and Fig. 4 (active models against Theorem 3.1's E[m]) for a few
// setups of models × rate.

namespace CLI {
class App;
}

namespace aeg::apps {

/// Runs each setup of `o.setups` ("16x0.1": 16 models at 0.1 req/s each) under each of
/// `o.policies`, with shapes from `mix_slots` and lengths of the given means; prints a table
/// of each part's mean share, the scale-ups and E[m]; writes `reports` (CSV: a row per setup;
/// JSON: every setup's numbers, CDF samples and active-model series) and `svg` (the stacked
/// bars) when open, and the figures at `figures` when wanted. The exit code.
int run_breakdown(const simulate_options& o, const std::shared_ptr<const gpu::sim_profile>& profile,
                  const std::vector<std::string>& mix_slots, double prompt_mean, double output_mean,
                  report_files& reports, std::optional<std::ofstream>& svg,
                  const figure_place& figures);

/// Adds `--breakdown` and `--setups` to `simulate`; they exclude the sweep's --models, --rates,
/// --slo-scales and --trace and the market, and run Aegaeon's pool alone unless --policies is
/// given.
void add_breakdown_options(CLI::App& simulate, simulate_options& o);

} // namespace aeg::apps
