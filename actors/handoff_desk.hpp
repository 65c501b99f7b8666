#pragma once

// A node's hand-off desk. A prefill instance whose request actor is on another node (a front
// end) cannot send it the decode job: the job holds KV in this node's host pool, and nothing
// that owns memory crosses nodes. The instance leaves the job here; the desk parks it under a
// ticket and sends the request actor a `parked_job`. The request actor asks its proxy for a
// decode instance of this node and answers `(decode_atom, ticket, instance)`: the desk gives the
// job to that instance, here, where its KV is. `(cancel_atom, ticket)` drops a job, and so does
// the request actor's end (the desk monitors it): a parked job never outlives its request.

#include <caf/fwd.hpp>

namespace aeg::actors {

/// Spawns a node's hand-off desk. It takes `(handoff_atom, decode_job)` from the node's prefill
/// instances, `(decode_atom, ticket, instance_actor)` and `(cancel_atom, ticket)` from request
/// actors.
caf::actor spawn_handoff_desk(caf::actor_system& sys);

} // namespace aeg::actors
