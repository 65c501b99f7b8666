#pragma once

#include "apps/server/server.hpp"

namespace aeg::apps {

/// `aegaeon serve`: loads the models (with progress), serves HTTP until SIGINT or SIGTERM, then
/// shuts down gracefully; returns the exit status.
int run_serve(server::serve_options options);

} // namespace aeg::apps
