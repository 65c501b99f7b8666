#pragma once

#include "models/engine.hpp"
#include "models/sampling.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/save_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace aeg::actors {

/// Asks an instance to generate: `(generate_atom, generation_request)`.
using generate_atom = caf::atom_constant<caf::atom("generate")>;
/// One new token, sent to the request's sink: `(token_atom, request id, token id,
/// models::token_logprobs)` (the log-probabilities only when the request asked for them).
using token_atom = caf::atom_constant<caf::atom("token")>;
/// Tokens made before they were sent, to the sink of a request that asked for them in batches
/// (token_delivery::batched): `(tokens_atom, request id, token_batch)`.
using tokens_atom = caf::atom_constant<caf::atom("tokens")>;
/// The end of a request, sent to its sink: `(done_atom, generation_result)`.
using done_atom = caf::atom_constant<caf::atom("done")>;
/// Cancels a request: `(cancel_atom, request id)`.
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
/// Asks an instance for its `instance_stats`.
using stats_atom = caf::atom_constant<caf::atom("stats")>;
/// A prefill instance passes a request on after its first token: `(handoff_atom, decode_job)`,
/// to the request's sink.
using handoff_atom = caf::atom_constant<caf::atom("handoff")>;
/// Gives a decode instance a request whose prompt is prefilled: `(decode_atom, decode_job)`.
using decode_atom = caf::atom_constant<caf::atom("decode")>;

/// Why a request ended.
enum class finish_reason {
  stop,        ///< it produced a stop token
  length,      ///< it reached max_tokens or the context length
  cancelled,   ///< it was cancelled
  error,       ///< it could not run (see the message)
  unavailable, ///< the instance serving it stopped (a pool places it again)
};

/// "stop", "length", "cancelled", "error", "unavailable".
std::string_view to_string(finish_reason r) noexcept;

/// Where a request's time on instances went, summed over the forward steps it was in, in
/// seconds: the steps that read its prompt (to its first token) and those that decoded after.
/// `execute` is the steps' compute, `kv_wait` their wait for KV still being copied in (a swap-in,
/// a hand-off's KV), `held` the rest of the steps' time (weights still arriving after a switch,
/// work queued before). On a real device the split is not known: the whole step is `execute`.
struct service_times {
  double prefill_execute = 0, prefill_kv_wait = 0, prefill_held = 0;
  double decode_execute = 0, decode_kv_wait = 0, decode_held = 0;

  /// Adds `o`'s times (a request's steps on another instance).
  service_times& operator+=(const service_times& o) noexcept {
    prefill_execute += o.prefill_execute;
    prefill_kv_wait += o.prefill_kv_wait;
    prefill_held += o.prefill_held;
    decode_execute += o.decode_execute;
    decode_kv_wait += o.decode_kv_wait;
    decode_held += o.decode_held;
    return *this;
  }
};

/// How a request's sink hears its tokens.
enum class token_delivery : std::uint8_t {
  each,    ///< a `token` message for each as it is made: a stream
  batched, ///< `tokens` messages of several, each token with its age; all before the end
  none,    ///< no token, only the end
};

/// Tokens sent together, oldest first, each with how long before the sending it was made
/// (an age, not a clock reading, so that it means the same on another machine).
struct token_batch {
  std::vector<std::int32_t> tokens;
  std::vector<std::int64_t> ages_ns;
};

/// The most tokens an instance sends in one batch: fewer are lost with an instance that stops
/// without running its exit (its requests, placed again, make them again).
inline constexpr std::size_t most_tokens_per_batch = 128;

/// What a sink that must time every token (a pool's request actor) asks its instance for, when
/// its own client asked for `client`: a stream stays a stream; otherwise batches, which carry
/// every token's time at a message per batch instead of one per token.
constexpr token_delivery relayed(token_delivery client) noexcept {
  return client == token_delivery::each ? token_delivery::each : token_delivery::batched;
}

struct generation_result;
struct decode_job;
struct parked_job;

/// Who hears a request's tokens and its end, as its `delivery` says: `(token_atom, id, token,
/// logprobs)` for each token, or `(tokens_atom, id, token_batch)` for several; then
/// `(done_atom, generation_result)` once, after every token.
using generation_sink = caf::typed_actor<
    caf::reacts_to<token_atom, std::uint64_t, std::int32_t, models::token_logprobs>,
    caf::reacts_to<tokens_atom, std::uint64_t, token_batch>,
    caf::reacts_to<done_atom, generation_result>>;

/// Who takes a request from a prefill instance once its prompt is prefilled (a pool's request
/// actor): `(handoff_atom, decode_job)`.
using handoff_sink = caf::typed_actor<caf::reacts_to<handoff_atom, decode_job>,
                                      caf::reacts_to<handoff_atom, parked_job>>;

/// One request for tokens. Its tokens (as `delivery` says) and its end go to `sink`.
struct generation_request {
  std::uint64_t id = 0;
  std::string model; ///< which of the instance's models; empty when it serves one
  std::vector<std::int32_t> prompt;
  models::sampling_params sampling;
  std::size_t max_tokens = 256;
  /// -1: no log-probabilities; n >= 0: each token's with the n most likely alternatives (at
  /// most models::max_top_logprobs).
  std::int32_t logprobs = -1;
  /// Nonzero: requests of this group carry the same prompt (the choices of one completion);
  /// those that reach an instance together read it once.
  std::uint64_t prompt_group = 0;
  std::vector<std::int32_t> stop_tokens; ///< generation ends after any of these
  generation_sink sink;
  /// How the sink hears the tokens. A client that reads the result, not the stream (a
  /// simulation's), saves a message per token with `none`. A pool's request actor still hears
  /// every token from its instance (in batches when its client does not stream: `relayed`): it
  /// keeps their times for the pool's metrics and the tokens for a re-placement. Batches carry
  /// no log-probabilities.
  token_delivery delivery = token_delivery::each;
  /// Where a prefill instance hands the request once its first token is out (a prefill
  /// instance refuses a request without one).
  handoff_sink handoff;
  /// Tokens generated before this request was (re)placed: `prompt` ends with them, max_tokens
  /// counts them, and sampling continues its random stream after them.
  std::size_t generated_before = 0;
  /// When the client's request arrived, which its deadlines count from (a pool sets it; left
  /// at the epoch, an instance takes the moment the request reaches it).
  std::chrono::steady_clock::time_point arrived{};
};

/// The KV cache of a prefilled request while it travels (prefill instance → request → decode
/// instance) in the shared host pool. A message is dropped unread when its receiver has stopped;
/// then the blocks go back to the pool as the last copy of the job goes, instead of staying
/// taken forever. Whoever keeps or frees the KV claims it first.
class kv_in_flight {
public:
  kv_in_flight(std::shared_ptr<gpu::kv_pool> host_pool, models::kv_handle kv);
  ~kv_in_flight();
  kv_in_flight(const kv_in_flight&) = delete;
  kv_in_flight& operator=(const kv_in_flight&) = delete;

  /// The KV, now the caller's to keep or release; empty (place::none) after the first claim.
  models::kv_handle claim() noexcept;
  /// The KV as it is, unclaimed (for checks before a claim).
  const models::kv_handle& peek() const noexcept { return kv_; }

private:
  std::shared_ptr<gpu::kv_pool> pool_;
  models::kv_handle kv_;
};

/// A request whose prompt has been prefilled, on its way to a decode instance: everything it
/// needs to go on, its KV cache included (in the shared host pool).
struct decode_job {
  generation_request request;
  std::vector<std::int32_t> tokens; ///< prompt and the tokens generated so far
  std::size_t generated = 0;
  /// Holds the K and V of all tokens but the last; shared by copies of the job (CAF may copy a
  /// message), claimed once.
  std::shared_ptr<kv_in_flight> kv;
  double prefill_seconds = 0;         ///< the prefill instance's steps on this prompt
  double switch_bytes_per_second = 0; ///< the prefill instance's measured scale-up rate (0: none)
  service_times service;              ///< the prefill instance's steps on this request
  caf::actor_addr from;               ///< the prefill instance that handed it off
};

/// A prefilled request whose request actor is on another node (a front end's): its decode job,
/// KV included, stays on the prefill instance's node, parked at that node's hand-off desk
/// under `ticket`, and this travels instead: `(handoff_atom, parked_job)`. The request actor
/// finds a decode instance of that node and tells the desk `(decode_atom, ticket, instance)`;
/// `(cancel_atom, ticket)` drops the job and frees its KV (handoff_desk.hpp).
struct parked_job {
  std::uint64_t ticket = 0;
  caf::actor desk;
  caf::actor_addr prefill; ///< the instance that handed it off (a stale hand-off is dropped)
  std::size_t prompt_tokens = 0;
  double prefill_seconds = 0;         ///< as decode_job's
  double switch_bytes_per_second = 0; ///< as decode_job's
  service_times service;              ///< as decode_job's
};

/// How a request ended.
struct generation_result {
  std::uint64_t id = 0;
  finish_reason reason = finish_reason::stop;
  std::size_t prompt_tokens = 0;
  std::size_t completion_tokens = 0;
  std::string message;   ///< what went wrong, for finish_reason::error
  service_times service; ///< its steps on the instance that ends it (a pool's: on every one)
};

// Serialisation of the messages that may cross nodes (CAF inspectors; actors/wire.hpp names
// them to an actor system). A request's sink and hand-off travel as actor addresses.
// `arrived` is a point on this process's steady clock, meaningless on another machine: it
// travels as the request's age when sent, so the receiver's deadlines count from the same
// arrival, late by the time the message spent in transit.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, generation_request& x) {
  using clock = std::chrono::steady_clock;
  std::int64_t age_ns = -1; // -1: not set (the epoch)
  return f(caf::meta::type_name("generation_request"), x.id, x.model, x.prompt, x.sampling,
           x.max_tokens, x.logprobs, x.prompt_group, x.stop_tokens, x.sink, x.delivery, x.handoff,
           x.generated_before, caf::meta::save_callback([&]() -> caf::error {
             if (x.arrived != clock::time_point{})
               age_ns =
                   std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - x.arrived)
                       .count();
             return caf::none;
           }),
           age_ns, caf::meta::load_callback([&]() -> caf::error {
             x.arrived =
                 age_ns < 0 ? clock::time_point{} : clock::now() - std::chrono::nanoseconds(age_ns);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, service_times& x) {
  return f(caf::meta::type_name("service_times"), x.prefill_execute, x.prefill_kv_wait,
           x.prefill_held, x.decode_execute, x.decode_kv_wait, x.decode_held);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, parked_job& x) {
  return f(caf::meta::type_name("parked_job"), x.ticket, x.desk, x.prefill, x.prompt_tokens,
           x.prefill_seconds, x.switch_bytes_per_second, x.service);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_batch& x) {
  return f(caf::meta::type_name("token_batch"), x.tokens, x.ages_ns);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, generation_result& x) {
  return f(caf::meta::type_name("generation_result"), x.id, x.reason, x.prompt_tokens,
           x.completion_tokens, x.message, x.service);
}

} // namespace aeg::actors

// A decode job holds its KV in the node's host pool: it never leaves the process, and
// prefill-to-decode hand-offs stay inside a node.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(aeg::actors::decode_job)
