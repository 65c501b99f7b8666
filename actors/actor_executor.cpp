#include "actors/actor_executor.hpp"

#include "actors/atoms.hpp"

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>
#include <caf/send.hpp>

namespace aeg::actors {

actor_executor::actor_executor(caf::actor_control_block* self) : self_(self) {}

void actor_executor::post(coro::work w) {
  auto strong = self_.lock();
  if (!strong)
    return; // the actor is gone; so are its coroutines
  caf::anon_send(caf::actor_cast<caf::actor>(std::move(strong)), resume_atom::value,
                 resume_msg{std::move(w).share()});
}

} // namespace aeg::actors
