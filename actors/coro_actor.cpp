#include "actors/coro_actor.hpp"

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

coro_host::coro_host(caf::actor_control_block* self,
                     std::function<void(const std::string&)> on_failure)
    : exec_(std::make_shared<actor_executor>(self)) {
  scope_ = std::make_unique<coro::async_scope>(
      [this, on_failure = std::move(on_failure)](std::exception_ptr e) {
        const std::string why = describe(e);
        if (failure_.empty())
          failure_ = why;
        on_failure(why);
      });
}

coro_host::~coro_host() = default;

void coro_host::spawn(coro::task<void> t) {
  scope_->spawn_now(exec_, std::move(t));
}

void coro_host::shutdown() {
  scope_->request_stop();
  scope_->destroy_suspended();
}

} // namespace aeg::actors
