#pragma once

// A CAF actor system on the deterministic test coordinator: nothing runs until the test calls
// `run()`, and time only moves when it triggers timeouts.

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/send.hpp>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace aeg::actors::testing {

class DeterministicActors : public ::testing::Test {
protected:
  DeterministicActors() {
    cfg_.set("scheduler.policy", caf::atom("testing"));
    cfg_.set("logger.verbosity", caf::atom("quiet"));
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    sched_ = &dynamic_cast<caf::scheduler::test_coordinator&>(sys_->scheduler());
  }
  ~DeterministicActors() override {
    // Pending request timeouts hold their requesters; end every actor the test spawned.
    for (auto& a : spawned_)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched_->run();
    sched_->trigger_timeouts();
    sched_->run();
    spawned_.clear();
    sys_.reset();
  }

  caf::actor_system& sys() { return *sys_; }

  /// Spawns an actor that the fixture ends before the system goes.
  template <class Impl, class... Ts>
  caf::actor spawn(Ts&&... xs) {
    auto a = caf::actor_cast<caf::actor>(sys_->spawn<Impl>(std::forward<Ts>(xs)...));
    spawned_.push_back(a);
    return a;
  }
  template <class F, class... Ts>
  caf::actor spawn_fn(F fun, Ts&&... xs) {
    auto a = caf::actor_cast<caf::actor>(sys_->spawn(fun, std::forward<Ts>(xs)...));
    spawned_.push_back(a);
    return a;
  }
  /// Runs every pending job; returns how many ran.
  std::size_t run() { return sched_->run(); }
  /// Fires every pending timeout, then runs what they caused.
  void expire_timeouts() {
    sched_->trigger_timeouts();
    run();
  }

private:
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  caf::scheduler::test_coordinator* sched_ = nullptr;
  std::vector<caf::actor> spawned_;
};

} // namespace aeg::actors::testing
