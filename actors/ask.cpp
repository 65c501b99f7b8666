#include "actors/ask.hpp"

#include <caf/actor_system.hpp>
#include <caf/sec.hpp>

namespace aeg::actors {

error to_error(caf::actor_system& sys, const caf::error& e) {
  if (e == caf::sec::request_timeout)
    return error{errc::timeout, "no reply before the timeout; the peer may be overloaded"};
  if (e == caf::sec::request_receiver_down)
    return error{errc::unavailable, "the actor asked is gone: " + sys.render(e)};
  // An actor's refusal (`caf::make_error(sec::runtime_error, "why")`): its own words.
  if (e.category() == caf::atom("system") && e.context().match_elements<std::string>())
    return error{errc::unavailable, e.context().get_as<std::string>(0)};
  return error{errc::internal, sys.render(e)};
}

} // namespace aeg::actors
