#pragma once

#include "actors/topology.hpp"
#include "apps/server/completion_request.hpp"
#include "apps/server/server.hpp"
#include "coro/error.hpp"

#include <map>
#include <string>

namespace aeg::server {

/// The pool a server runs: the topology file's, or every GGUF model of the models directory on
/// one colocated instance. Checked as far as it can be before anything starts.
result<actors::pool_spec> spec_of(const serve_options& opts);

/// Each model's text side, by name: its GGUF's own; a synthetic model speaks through that of a
/// GGUF model with its vocabulary size. Reads GGUF headers and vocabularies only. An error names
/// a model that has no tokenizer and how to give it one.
result<std::map<std::string, models::text_model>> text_models_of(const actors::pool_spec& spec);

} // namespace aeg::server
