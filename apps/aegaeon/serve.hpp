#pragma once

#include "actors/cluster.hpp"
#include "apps/server/server.hpp"
#include "coro/error.hpp"

#include <string>

namespace aeg::apps {

/// `aegaeon serve`: loads the models (with progress), serves HTTP until SIGINT or SIGTERM, then
/// shuts down gracefully; returns the exit status: 2 for a setup refused before anything starts
/// (the topology, the models, their memory), 1 for a failure while starting or serving.
int run_serve(server::serve_options options);

using actors::read_key_file;

} // namespace aeg::apps
