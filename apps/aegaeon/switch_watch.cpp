#include "apps/aegaeon/switch_watch.hpp"

#include "actors/generation.hpp"

#include <caf/all.hpp>

#include <memory>
#include <optional>

namespace aeg::apps {

namespace {

using look_atom = caf::atom_constant<caf::atom("look")>;

class switch_watch final : public caf::event_based_actor {
public:
  switch_watch(caf::actor_config& cfg, std::vector<actors::instance_actor> instances,
               std::vector<std::string> names, std::chrono::steady_clock::time_point start,
               std::chrono::milliseconds every)
      : caf::event_based_actor(cfg), instances_(std::move(instances)), start_(start),
        every_(every) {
    seen_.instances.resize(instances_.size());
    for (std::size_t i = 0; i < instances_.size() && i < names.size(); ++i)
      seen_.instances[i].name = std::move(names[i]);
  }

  caf::behavior make_behavior() override {
    send(this, look_atom::value);
    return {
        [this](look_atom) {
          look({});
          delayed_send(this, every_, look_atom::value);
        },
        [this](collect_atom) -> caf::result<switch_report> {
          auto done = make_response_promise<switch_report>();
          look(done);
          return done;
        },
    };
  }

private:
  // Asks every instance for its stats; with `done`, delivers the report once all have answered.
  void look(std::optional<caf::typed_response_promise<switch_report>> done) {
    auto left = std::make_shared<std::size_t>(instances_.size());
    auto answered = [this, left, done]() mutable {
      if (--*left == 0 && done)
        done->deliver(seen_);
    };
    if (instances_.empty() && done)
      done->deliver(seen_);
    for (std::size_t i = 0; i < instances_.size(); ++i)
      request(instances_[i], std::chrono::seconds(30), actors::stats_atom::value)
          .then(
              [this, i, answered](const actors::instance_stats& s) mutable {
                const double now =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
                        .count();
                seen_.instances[i].merge(s, now);
                answered();
              },
              [answered](caf::error&) mutable { answered(); });
  }

  std::vector<actors::instance_actor> instances_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::milliseconds every_;
  switch_report seen_;
};

} // namespace

caf::actor spawn_switch_watch(caf::actor_system& sys, std::vector<actors::instance_actor> instances,
                              std::vector<std::string> names,
                              std::chrono::steady_clock::time_point start,
                              std::chrono::milliseconds every) {
  return sys.spawn<switch_watch>(std::move(instances), std::move(names), start, every);
}

} // namespace aeg::apps
