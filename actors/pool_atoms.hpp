#pragma once

// Messages between the proxy and its request actors (internal to a pool).

#include <caf/atom.hpp>

namespace aeg::actors {

/// proxy → request: `(placed_atom, instance, bool prefill_lane)`: where it now runs.
using placed_atom = caf::atom_constant<caf::atom("placed")>;
/// request → proxy: `(prefilled_atom, id, prompt_tokens, seconds, switch_bytes_per_second)`: its
/// prefill instance is done with it, after `seconds` of steps on a prompt of `prompt_tokens`
/// (0 s: not measured), and scales models up at the rate given (0: not measured yet).
using prefilled_atom = caf::atom_constant<caf::atom("prefilled")>;
/// request → proxy: `(place_dec_atom, id, model)` → a decode instance (or an error).
using place_decode_atom = caf::atom_constant<caf::atom("place_dec")>;
/// request → proxy: `(replace_atom, id, generation_request)`: place it again (its instance died).
using replace_atom = caf::atom_constant<caf::atom("replace")>;
/// request → proxy: `(finished_atom, request_metrics)`: it ended.
using finished_atom = caf::atom_constant<caf::atom("finished")>;

} // namespace aeg::actors
