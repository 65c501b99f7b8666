#pragma once

#include "actors/pool_metrics.hpp"
#include "apps/server/metrics.hpp"
#include "apps/server/token_rates.hpp"

#include <map>
#include <string>
#include <vector>

namespace aeg::server {

/// What the server itself knows when it answers `GET /status`.
struct status_inputs {
  double uptime_seconds = 0;
  bool shutting_down = false;
  bool remote = false;                  ///< a front end: instance names begin with their node
  std::vector<std::string> model_names; ///< in the topology's order
  std::map<std::string, model_counts> counts;
};

/// The live view of the pool as JSON (`GET /status`, shape in docs/server.md): per model its
/// queue, running and finished requests, tokens and tokens per second, SLO attainment; per
/// instance its models, sequences, KV and switches; and the switches of the last minute. Keeps
/// the token samples the rates are measured from. io thread only.
class status_page {
public:
  /// Switches this long ago or less are listed.
  static constexpr double switch_horizon_seconds = 60;

  /// The JSON text, with `pool` and `instances` as `gather_metrics` gathered them at about
  /// `now` (the rates' clock).
  std::string render(const status_inputs& in, const actors::pool_metrics& pool,
                     const std::vector<instance_report>& instances,
                     token_rates::clock::time_point now);

private:
  token_rates rates_;
};

} // namespace aeg::server
