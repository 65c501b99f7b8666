#pragma once

#include "models/sampling.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace aeg::actors {

/// Asks an instance to generate: `(generate_atom, generation_request)`.
using generate_atom = caf::atom_constant<caf::atom("generate")>;
/// One new token, sent to the request's sink: `(token_atom, request id, token id)`.
using token_atom = caf::atom_constant<caf::atom("token")>;
/// The end of a request, sent to its sink: `(done_atom, generation_result)`.
using done_atom = caf::atom_constant<caf::atom("done")>;
/// Cancels a request: `(cancel_atom, request id)`.
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
/// Asks an instance for its `instance_stats`.
using stats_atom = caf::atom_constant<caf::atom("stats")>;

/// Why a request ended.
enum class finish_reason {
  stop,      ///< it produced a stop token
  length,    ///< it reached max_tokens or the context length
  cancelled, ///< it was cancelled
  error,     ///< it could not run (see the message)
};

/// "stop", "length", "cancelled", "error".
std::string_view to_string(finish_reason r) noexcept;

/// One request for tokens. Its tokens and its end go to `sink` as they happen.
struct generation_request {
  std::uint64_t id = 0;
  std::string model; ///< which of the instance's models; empty when it serves one
  std::vector<std::int32_t> prompt;
  models::sampling_params sampling;
  std::size_t max_tokens = 256;
  std::vector<std::int32_t> stop_tokens; ///< generation ends after any of these
  caf::actor sink;
};

/// How a request ended.
struct generation_result {
  std::uint64_t id = 0;
  finish_reason reason = finish_reason::stop;
  std::size_t prompt_tokens = 0;
  std::size_t completion_tokens = 0;
  std::string message; ///< what went wrong, for finish_reason::error
};

} // namespace aeg::actors

// Local messages between actors of one process.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(aeg::actors::generation_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(aeg::actors::generation_result)
