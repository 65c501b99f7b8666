#pragma once

// The messages that may cross nodes, named to an actor system so that CAF's network layer can
// carry them: requests and their ends, instance statistics, and the typed handles of instances
// and sinks. Their layouts are the `inspect` overloads beside each type.

namespace caf {
class actor_system_config;
}

namespace aeg::actors {

/// Adds every message type that may cross nodes to `cfg` (before the system starts).
void add_message_types(caf::actor_system_config& cfg);

} // namespace aeg::actors
