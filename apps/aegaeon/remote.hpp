#pragma once

#include "apps/aegaeon/bench.hpp"
#include "apps/aegaeon/generate.hpp"

namespace aeg::apps {

/// `aegaeon chat --url`: a terminal chat with a model of a running server, streaming answers.
int run_remote_chat(const generate_options& options);

/// `aegaeon bench --url`: replays per-model Poisson arrivals (or a trace) against a running
/// server at each rate and reports TTFT/TBT percentiles, SLO attainment and goodput.
int run_remote_bench(const bench_options& options);

} // namespace aeg::apps
