#pragma once

#include "actors/instance.hpp"
#include "apps/aegaeon/switch_history.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace aeg::apps {

/// Asks a switch watch for what it has seen: answers `switch_report` after a last look.
using collect_atom = caf::atom_constant<caf::atom("collect")>;

/// Every instance's switches during a run, in the order the watch was given them.
struct switch_report {
  std::vector<instance_switches> instances;
};

/// Spawns an actor that asks each of `instances` (named `names`) for its stats every `every`
/// (never waiting on them: the answers come as messages) and merges their switch logs, timed
/// from `start`; an instance keeps only its last 256 switches, so a run that switches more is
/// still seen whole unless 256 switches fit between two looks. On `(collect_atom)` it looks once
/// more and answers a `switch_report` when every instance has answered (or died). Stop it with
/// an exit message when done.
caf::actor spawn_switch_watch(caf::actor_system& sys, std::vector<actors::instance_actor> instances,
                              std::vector<std::string> names,
                              std::chrono::steady_clock::time_point start,
                              std::chrono::milliseconds every = std::chrono::milliseconds(500));

} // namespace aeg::apps

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(aeg::apps::switch_report)
