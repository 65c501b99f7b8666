#pragma once

#include "apps/server/server.hpp"
#include "coro/error.hpp"

#include <string>

namespace aeg::apps {

/// `aegaeon serve`: loads the models (with progress), serves HTTP until SIGINT or SIGTERM, then
/// shuts down gracefully; returns the exit status: 2 for a setup refused before anything starts
/// (the topology, the models, their memory), 1 for a failure while starting or serving.
int run_serve(server::serve_options options);

/// The API key in the file at `path`: its first line without the line break. An error says why
/// it cannot be used (unreadable, or no key in it).
result<std::string> read_key_file(const std::string& path);

} // namespace aeg::apps
