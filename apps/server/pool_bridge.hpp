#pragma once

#include "actors/generation.hpp"
#include "actors/pool.hpp"
#include "apps/server/metrics.hpp"
#include "apps/server/openai.hpp"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

// Where the server's two worlds meet: the pool's actors on CAF's threads and the network on one
// Asio thread. Actors post handlers onto the io thread through an `io_link`; the io thread sends
// actors messages. Neither side ever waits for the other.

namespace aeg::server {

/// Posts handlers onto the server's io_context from CAF threads, for as long as it exists.
class io_link {
public:
  explicit io_link(asio::io_context& io) : io_(&io) {}
  /// Runs `f` on the io thread, unless the link was closed.
  template <class F>
  void post(F&& f) {
    std::lock_guard lock(mutex_);
    if (io_ != nullptr)
      asio::post(*io_, std::forward<F>(f));
  }
  /// The io_context is going: nothing more is posted.
  void close() {
    std::lock_guard lock(mutex_);
    io_ = nullptr;
  }

private:
  std::mutex mutex_;
  asio::io_context* io_;
};

/// What the pool says of one generation, told on the io thread.
class generation_listener {
public:
  virtual ~generation_listener() = default;
  /// The pool took it.
  virtual void submitted() = 0;
  /// The pool refused it (unknown model, full, no instance): the answer to give.
  virtual void refused(api_error e) = 0;
  virtual void token(std::int32_t token, const models::token_logprobs& logprobs) = 0;
  /// Its end; nothing follows.
  virtual void done(const actors::generation_result& r) = 0;
};

/// Stops a generation (from the io thread): `(bridge_cancel_atom)`.
using bridge_cancel_atom = caf::atom_constant<caf::atom("brcancel")>;

/// The actor that carries one generation between the pool and the io thread: the request's sink,
/// and cancellable from the io thread.
using bridge_actor = actors::generation_sink::extend<caf::reacts_to<bridge_cancel_atom>>;

/// Submits `r` to `proxy` from a bridge (a coroutine actor) and relays the generation's life to
/// `listener` on the io thread through `link`, while the listener lives. The bridge ends with
/// the generation.
bridge_actor start_generation(caf::actor_system& sys, actors::proxy_actor proxy,
                              std::shared_ptr<io_link> link,
                              std::weak_ptr<generation_listener> listener,
                              actors::generation_request r);

/// Asks the pool's proxy and every instance for their figures, without blocking anyone, and
/// calls `done` on the io thread with them (an instance that did not answer within 5 s has no
/// stats; a proxy that did not, empty metrics).
void gather_metrics(caf::actor_system& sys, const actors::pool& pool, std::shared_ptr<io_link> link,
                    std::function<void(actors::pool_metrics, std::vector<instance_report>)> done);

} // namespace aeg::server
