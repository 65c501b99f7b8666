#include "actors/coro_actor.hpp"

#include <caf/sec.hpp>

#include <exception>
#include <string>

namespace aeg::actors {

namespace {

std::string describe(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

} // namespace

coro_actor::coro_actor(caf::actor_config& cfg)
    : caf::event_based_actor(cfg),
      exec_(std::make_shared<actor_executor>(caf::actor_control_block::from(this))) {
  scope_ = std::make_unique<coro::async_scope>([this](std::exception_ptr e) {
    const std::string why = describe(e);
    if (failure_.empty())
      failure_ = why;
    quit(caf::make_error(caf::sec::runtime_error,
                         "a coroutine of actor " + std::to_string(id()) + " failed: " + why));
  });
}

coro_actor::~coro_actor() = default;

void coro_actor::spawn(coro::task<void> t) {
  scope_->spawn_now(exec_, std::move(t));
}

void coro_actor::on_exit() {
  // Runs inside the actor after its last handler: no coroutine of ours is running, so every
  // one left is suspended and can be destroyed. Their waiters are abandoned, so completions
  // that fire later resume nothing.
  scope_->request_stop();
  scope_->destroy_suspended();
  caf::event_based_actor::on_exit();
}

} // namespace aeg::actors
