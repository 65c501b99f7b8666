#include "actors/node.hpp"

#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/message.hpp>
#include <caf/typed_event_based_actor.hpp>

namespace aeg::actors {

namespace {

// Compares in time that depends on the lengths only, so that a wrong key's answer does not tell
// how much of it was right.
bool same_key(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

} // namespace

node_actor spawn_node(caf::actor_system& sys, node_info info, std::string cluster_key) {
  return sys.spawn(
      [info = std::move(info), key = std::move(cluster_key)]() -> node_actor::behavior_type {
        return {[=](join_atom, const std::string& offered) -> caf::result<node_info> {
          if (!same_key(offered, key))
            return caf::error(1, caf::atom("aegaeon"),
                              caf::make_message("wrong cluster key: give the front end the key "
                                                "file the workers were started with"));
          return info;
        }};
      });
}

} // namespace aeg::actors
