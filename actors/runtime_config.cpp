#include "actors/runtime_config.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/config_value.hpp>

namespace aeg::actors {

void configure_runtime(caf::actor_system_config& cfg) {
  cfg.set("logger.verbosity", caf::atom("quiet"));
  // After its aggressive polls (CAF's default: 100, a few microseconds), an idle worker goes
  // straight to its condition variable; its 10 ms timeout still lets it steal queued work.
  cfg.set("work-stealing.moderate-poll-attempts", caf::config_value::integer{0});
}

} // namespace aeg::actors
