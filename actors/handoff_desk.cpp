#include "actors/handoff_desk.hpp"

#include "actors/generation.hpp"
#include "actors/instance.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <cstdint>
#include <map>

namespace aeg::actors {

namespace {

struct desk_state {
  struct parked {
    decode_job job;
    caf::actor_addr owner; // the request actor it waits for
  };
  std::map<std::uint64_t, parked> jobs;
  std::map<caf::actor_addr, std::size_t> owners; // monitored request actors, with their jobs
  std::uint64_t next_ticket = 0;
  static inline const char* name = "handoff_desk";
};

caf::behavior desk(caf::stateful_actor<desk_state>* self) {
  // Forgets a job (its KV goes back to the pool with it) and, with its owner's last one, the
  // owner's monitor.
  auto drop = [self](std::map<std::uint64_t, desk_state::parked>::iterator it) {
    auto& owners = self->state.owners;
    if (auto o = owners.find(it->second.owner); o != owners.end() && --o->second == 0) {
      self->demonitor(o->first);
      owners.erase(o);
    }
    self->state.jobs.erase(it);
  };
  self->set_down_handler([self](caf::down_msg& d) {
    // A request actor that ended (its front end lost) leaves its jobs behind: free them.
    std::erase_if(self->state.jobs, [&](const auto& kv) { return kv.second.owner == d.source; });
    self->state.owners.erase(d.source);
  });
  return {
      [self](handoff_atom, decode_job& job) {
        const auto owner = job.request.handoff;
        if (!owner)
          return; // nobody to ask for a decode instance: the job's KV goes back now
        const auto ticket = ++self->state.next_ticket;
        if (self->state.owners[owner.address()]++ == 0)
          self->monitor(owner);
        parked_job p{ticket,
                     caf::actor_cast<caf::actor>(self),
                     job.from,
                     job.request.prompt.size(),
                     job.prefill_seconds,
                     job.switch_bytes_per_second,
                     job.service};
        self->state.jobs.emplace(ticket, desk_state::parked{std::move(job), owner.address()});
        self->send(owner, handoff_atom::value, std::move(p));
      },
      [self, drop](decode_atom, std::uint64_t ticket, instance_actor& decoder) {
        auto it = self->state.jobs.find(ticket);
        if (it == self->state.jobs.end())
          return; // already dropped: the request actor ended or cancelled
        // Should the decoder stop before reading it, the dropped job frees its KV.
        self->send(decoder, decode_atom::value, std::move(it->second.job));
        drop(it);
      },
      [self, drop](cancel_atom, std::uint64_t ticket) {
        if (auto it = self->state.jobs.find(ticket); it != self->state.jobs.end())
          drop(it);
      },
  };
}

} // namespace

caf::actor spawn_handoff_desk(caf::actor_system& sys) {
  return sys.spawn(desk);
}

} // namespace aeg::actors
