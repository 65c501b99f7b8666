#include "actors/wire.hpp"

#include "actors/generation.hpp"
#include "actors/instance.hpp"

#include <caf/actor_system_config.hpp>

namespace aeg::actors {

void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<generation_request>("aeg::generation_request");
  cfg.add_message_type<generation_result>("aeg::generation_result");
  cfg.add_message_type<models::token_logprobs>("aeg::token_logprobs");
  cfg.add_message_type<instance_stats>("aeg::instance_stats");
  cfg.add_message_type<instance_actor>("aeg::instance_actor");
  cfg.add_message_type<generation_sink>("aeg::generation_sink");
  cfg.add_message_type<handoff_sink>("aeg::handoff_sink");
  cfg.add_message_type<parked_job>("aeg::parked_job");
  cfg.add_message_type<token_batch>("aeg::token_batch");
}

} // namespace aeg::actors
