#pragma once

// The roles of a pool's parts, as plain enums (topology files, policies and actors name them).

#include <optional>
#include <string_view>

namespace aeg::actors {

/// What an instance does with a request.
enum class instance_role {
  colocated, ///< prefill and decode on this device
  prefill,   ///< prefill, then hand the request (its first token made) to a decode instance
  decode,    ///< decode requests prefilled elsewhere (and any full request it is given)
};

/// How requests are placed on instances.
enum class routing {
  aegaeon,       ///< prefill instances by grouped FCFS (or FCFS), decode instances by model batch
  request_level, ///< colocated instances; a model keeps an instance until its requests drain
  dedicated,     ///< colocated instances, each serving its own models only
};

/// "colocated", "prefill", "decode".
const char* to_string(instance_role r) noexcept;
/// The role `to_string` names `name`; none for another name.
std::optional<instance_role> role_named(std::string_view name) noexcept;

} // namespace aeg::actors
