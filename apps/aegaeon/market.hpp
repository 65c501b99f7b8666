#pragma once

#include "apps/aegaeon/simulate.hpp"
#include "apps/aegaeon/trace.hpp"
#include "coro/error.hpp"

#include <cstddef>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// The paper's production scenario in the simulator: a market of models whose rates are as skewed
// as a real one's (a few popular models, a long tail of rarely used ones), and the fewest devices
// each policy needs to serve it at 90% SLO attainment.

namespace CLI {
class App;
}

namespace aeg::apps {

/// Runs the scenario of `o` (o.market models, rates from market_rates, shapes from `mix_slots`,
/// lengths of the given means): for each policy, a bisection over 1..o.market_devices devices
/// (o.prefill_devices / o.devices of them prefill-only where the policy has them) for the
/// fewest at 90% attainment. Prints each probe and the answer; writes `reports` and `svg` (the
/// attainment of every probe against its device count) when open. The exit code.
int run_market(const simulate_options& o, const std::shared_ptr<const gpu::sim_profile>& profile,
               const std::vector<std::string>& mix_slots, double prompt_mean, double output_mean,
               report_files& reports, std::optional<std::ofstream>& svg);

/// Adds `--market` and its options to `simulate`; they exclude the sweep's options (--models,
/// --rates, --slo-scales, --trace, --figures), which a market does not use.
void add_market_options(CLI::App& simulate, simulate_options& o);

} // namespace aeg::apps
