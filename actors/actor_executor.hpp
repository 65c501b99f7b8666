#pragma once

#include "coro/executor.hpp"

#include <caf/actor_addr.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>
#include <caf/weak_intrusive_ptr.hpp>

#include <memory>

namespace aeg::actors {

/// The message that carries posted work into an actor's mailbox. Local only (never serialized).
struct resume_msg {
  std::shared_ptr<coro::work::runnable> job;
};

/// An executor whose work runs inside one actor: `post` sends the work into the actor's mailbox
/// and the actor runs it while handling that message, so coroutines on this executor only ever
/// run inside the actor. Holds the actor weakly: work posted after the actor is gone is dropped
/// (its coroutines were destroyed when it exited). Callable from any thread.
class actor_executor final : public coro::executor_base {
public:
  explicit actor_executor(caf::actor_control_block* self);
  using executor_base::post;
  void post(coro::work w) override;

private:
  caf::weak_actor_ptr self_;
};

} // namespace aeg::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(aeg::actors::resume_msg)
