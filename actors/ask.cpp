#include "actors/ask.hpp"

#include <caf/actor_system.hpp>

namespace aeg::actors {

error to_error(caf::actor_system& sys, const caf::error& e) {
  if (e == caf::sec::request_timeout)
    return error{errc::timeout, "no reply before the timeout; the peer may be overloaded"};
  if (e == caf::sec::request_receiver_down)
    return error{errc::unavailable, "the actor asked is gone: " + sys.render(e)};
  return error{errc::internal, sys.render(e)};
}

} // namespace aeg::actors
