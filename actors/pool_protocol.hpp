#pragma once

// A pool's protocols as typed handles: the proxy's public one, and the messages between the proxy
// and its request actors (internal to a pool).

#include "actors/generation.hpp"
#include "actors/instance.hpp"
#include "actors/pool_metrics.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace aeg::actors {

/// An instance as the proxy sees it.
struct pool_member {
  instance_actor actor;
  instance_role role = instance_role::colocated;
  std::vector<std::string> models; ///< what it serves
  std::string name;                ///< for reports: "gpu0/decode"
  /// Its device KV pool, as planned (0: unknown). Decode placement keeps a model's requests on
  /// one instance while their KV fits there, and sends the rest to another.
  std::size_t kv_bytes = 0;
  /// The node it runs on: a prefill instance's requests go to decode instances of the same
  /// node (their KV moves through that node's host pool). Empty for a pool in one process.
  std::string node;
};

/// Adds an instance to a running proxy (a worker that joined again): `(add_member_atom,
/// pool_member)`. A prefill instance takes the lane of a lost one of its name; one with no such
/// lane is not added.
using add_member_atom = caf::atom_constant<caf::atom("add_member")>;

/// Submits a request to the proxy: `(submit_atom, generation_request)`; the reply is the id the
/// proxy gave it (for `cancel_atom`), or an error. Its tokens and end go to the request's sink.
using submit_atom = caf::atom_constant<caf::atom("submit")>;
/// Asks the proxy for `pool_metrics`.
using metrics_atom = caf::atom_constant<caf::atom("metrics")>;

/// A pool's front door: `(submit_atom, generation_request)` answers the request's id in the pool
/// (its tokens and end go to its sink), `(cancel_atom, id)` ends it, `(metrics_atom)` answers
/// `pool_metrics`.
using proxy_actor =
    caf::typed_actor<caf::replies_to<submit_atom, generation_request>::with<std::uint64_t>,
                     caf::reacts_to<add_member_atom, pool_member>,
                     caf::reacts_to<cancel_atom, std::uint64_t>,
                     caf::replies_to<metrics_atom>::with<pool_metrics>>;

/// proxy → request: `(placed_atom, instance)`: where it now runs.
using placed_atom = caf::atom_constant<caf::atom("placed")>;
/// request → proxy: `(place_dec_atom, id, prompt_tokens, seconds, switch_bytes_per_second)` → a
/// decode instance (or an error). Its prefill instance is done with it, after `seconds` of steps
/// on a prompt of `prompt_tokens` (0 s: not measured), and scales models up at the rate given (0:
/// not measured yet). The hand-off's one visit to the proxy.
using place_decode_atom = caf::atom_constant<caf::atom("place_dec")>;
/// request → proxy: `(replace_atom, id, generation_request)`: place it again (its instance died).
using replace_atom = caf::atom_constant<caf::atom("replace")>;
/// request → proxy: `(finished_atom, id, request_metrics)`: it ended.
using finished_atom = caf::atom_constant<caf::atom("finished")>;

/// A request actor: the sink of its instance (tokens, its end, the hand-off from a prefill
/// instance), told by the proxy where it runs, and cancelled by it.
using request_actor = caf::typed_actor<
    caf::reacts_to<placed_atom, instance_actor>,
    caf::reacts_to<token_atom, std::uint64_t, std::int32_t, models::token_logprobs>,
    caf::reacts_to<tokens_atom, std::uint64_t, token_batch>,
    caf::reacts_to<done_atom, generation_result>, caf::reacts_to<handoff_atom, decode_job>,
    caf::reacts_to<handoff_atom, parked_job>, caf::reacts_to<cancel_atom>>;

/// The proxy as its request actors see it: its public messages and theirs.
using pool_proxy_actor =
    proxy_actor::extend<caf::replies_to<place_decode_atom, std::uint64_t, std::size_t, double,
                                        double>::with<instance_actor>,
                        caf::reacts_to<replace_atom, std::uint64_t, generation_request>,
                        caf::reacts_to<finished_atom, std::uint64_t, request_metrics>>;

} // namespace aeg::actors

// Local: a member holds a handle and plain data, and never leaves its process.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(aeg::actors::pool_member)
