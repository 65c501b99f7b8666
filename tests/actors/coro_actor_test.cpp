#include "actors/ask.hpp"
#include "actors/coro_actor.hpp"
#include "coro/completion.hpp"
#include "tests/actors/actor_fixture.hpp"

#include <caf/all.hpp>
#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace aeg::actors {
namespace {

using start_atom = caf::atom_constant<caf::atom("start")>;
using double_atom = caf::atom_constant<caf::atom("double")>;
using silent_atom = caf::atom_constant<caf::atom("silent")>;
using refuse_atom = caf::atom_constant<caf::atom("refuse")>;

struct destroy_probe {
  int* destroyed;
  explicit destroy_probe(int* d) : destroyed(d) {}
  destroy_probe(const destroy_probe&) = delete;
  ~destroy_probe() { ++*destroyed; }
};

// Replies to `double` with twice the value, never replies to `silent`, and fails `refuse`.
caf::behavior doubler(caf::event_based_actor* self) {
  return {
      [](double_atom, int x) { return 2 * x; },
      [self](silent_atom, int) {
        auto rp = self->make_response_promise<int>();
        return rp; // never delivered
      },
      [](refuse_atom, int) -> caf::result<int> {
        return caf::make_error(caf::sec::invalid_argument, "refused on purpose");
      },
  };
}

// What a test actor records about its coroutines.
struct observations {
  std::vector<int> values;
  std::vector<error> errors;
  int resumed_outside_handler = 0;
  int destroyed = 0;
};

// Spawns one coroutine per `start` message. Each awaits `completions[i]` (fired by the test from
// other threads) or asks the doubler, and records what it saw.
class worker final : public coro_actor {
public:
  worker(caf::actor_config& cfg, observations* obs, std::vector<coro::completion<int>>* pending,
         caf::actor peer)
      : coro_actor(cfg), obs_(obs), pending_(pending), peer_(std::move(peer)) {}

  caf::behavior make_behavior() override {
    return with_coroutines([this](start_atom, int mode) {
      switch (mode) {
      case 0:
        for (auto& c : *pending_)
          spawn(wait_completion(std::move(c)));
        pending_->clear();
        break;
      case 1:
        spawn(ask_peer(double_atom::value, 21));
        break;
      case 2:
        spawn(ask_peer(silent_atom::value, 0));
        break;
      case 3:
        spawn(ask_peer(refuse_atom::value, 0));
        break;
      case 4:
        spawn(throw_from_coroutine());
        break;
      }
    });
  }

private:
  void check_inside_handler() {
    if (current_mailbox_element() == nullptr)
      ++obs_->resumed_outside_handler;
  }

  coro::task<void> wait_completion(coro::completion<int> c) {
    destroy_probe probe(&obs_->destroyed);
    int v = co_await std::move(c);
    check_inside_handler();
    obs_->values.push_back(v);
  }

  template <class Atom>
  coro::task<void> ask_peer(Atom a, int x) {
    destroy_probe probe(&obs_->destroyed);
    auto r = co_await ask<int>(this, peer_, std::chrono::seconds(1), a, x);
    check_inside_handler();
    if (r)
      obs_->values.push_back(*r);
    else
      obs_->errors.push_back(r.error());
  }

  coro::task<void> throw_from_coroutine() {
    co_await ask<int>(this, peer_, std::chrono::seconds(1), double_atom::value, 1);
    throw std::runtime_error("coroutine failed on purpose");
  }

  observations* obs_;
  std::vector<coro::completion<int>>* pending_;
  caf::actor peer_;
};

class CoroActor : public testing::DeterministicActors {};

TEST_F(CoroActor, CompletionsFromOtherThreadsResumeInsideTheActor) {
  observations obs;
  std::vector<coro::completer<int>> completers;
  std::vector<coro::completion<int>> pending;
  for (int i = 0; i < 50; ++i) {
    auto [d, f] = coro::make_completion<int>();
    completers.push_back(std::move(d));
    pending.push_back(std::move(f));
  }
  auto w = spawn<worker>(&obs, &pending, caf::actor{});
  caf::anon_send(w, start_atom::value, 0);
  run();
  EXPECT_TRUE(obs.values.empty());
  std::vector<std::thread> firers;
  for (int t = 0; t < 2; ++t)
    firers.emplace_back([&, t] {
      for (int i = t; i < 50; i += 2)
        completers[i].set_value(i);
    });
  for (auto& f : firers)
    f.join();
  EXPECT_TRUE(obs.values.empty()) << "nothing may run until the actor handles its mailbox";
  run();
  ASSERT_EQ(obs.values.size(), 50u);
  EXPECT_EQ(obs.resumed_outside_handler, 0);
  EXPECT_EQ(obs.destroyed, 50);
}

TEST_F(CoroActor, AwaitsAnotherActorsReply) {
  observations obs;
  std::vector<coro::completion<int>> none;
  auto peer = spawn_fn(doubler);
  auto w = spawn<worker>(&obs, &none, peer);
  caf::anon_send(w, start_atom::value, 1);
  run();
  ASSERT_EQ(obs.values.size(), 1u);
  EXPECT_EQ(obs.values[0], 42);
  EXPECT_EQ(obs.resumed_outside_handler, 0);
}

TEST_F(CoroActor, NoReplyBeforeTheTimeoutIsATimeoutError) {
  observations obs;
  std::vector<coro::completion<int>> none;
  auto peer = spawn_fn(doubler);
  auto w = spawn<worker>(&obs, &none, peer);
  caf::anon_send(w, start_atom::value, 2);
  run();
  EXPECT_TRUE(obs.errors.empty());
  expire_timeouts();
  ASSERT_EQ(obs.errors.size(), 1u);
  EXPECT_EQ(obs.errors[0].code, errc::timeout);
}

TEST_F(CoroActor, AnErrorReplyBecomesAnErrorValue) {
  observations obs;
  std::vector<coro::completion<int>> none;
  auto peer = spawn_fn(doubler);
  auto w = spawn<worker>(&obs, &none, peer);
  caf::anon_send(w, start_atom::value, 3);
  run();
  ASSERT_EQ(obs.errors.size(), 1u);
  EXPECT_NE(obs.errors[0].message.find("refused on purpose"), std::string::npos)
      << obs.errors[0].message;
}

TEST_F(CoroActor, AskingAnActorThatIsGoneIsUnavailable) {
  observations obs;
  std::vector<coro::completion<int>> none;
  auto peer = spawn_fn(doubler);
  caf::anon_send_exit(peer, caf::exit_reason::kill);
  run();
  auto w = spawn<worker>(&obs, &none, peer);
  caf::anon_send(w, start_atom::value, 1);
  run();
  expire_timeouts();
  ASSERT_EQ(obs.errors.size(), 1u);
  EXPECT_TRUE(obs.errors[0].code == errc::unavailable || obs.errors[0].code == errc::timeout)
      << obs.errors[0].to_string();
}

TEST_F(CoroActor, TerminationDestroysSuspendedCoroutinesAndDropsLateCompletions) {
  observations obs;
  std::vector<coro::completer<int>> completers;
  std::vector<coro::completion<int>> pending;
  for (int i = 0; i < 10; ++i) {
    auto [d, f] = coro::make_completion<int>();
    completers.push_back(std::move(d));
    pending.push_back(std::move(f));
  }
  auto w = spawn<worker>(&obs, &pending, caf::actor{});
  caf::anon_send(w, start_atom::value, 0);
  run();
  EXPECT_EQ(obs.destroyed, 0);
  caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
  run();
  EXPECT_EQ(obs.destroyed, 10) << "suspended frames are destroyed when the actor exits";
  // Late completions from another thread: must not touch the freed frames (ASan checks).
  std::thread late([&] {
    for (auto& c : completers)
      c.set_value(1);
  });
  late.join();
  run();
  EXPECT_TRUE(obs.values.empty());
}

TEST_F(CoroActor, AFailingCoroutineTerminatesItsActorWithTheError) {
  observations obs;
  std::vector<coro::completion<int>> none;
  auto peer = spawn_fn(doubler);
  auto w = spawn<worker>(&obs, &none, peer);
  caf::error reason;
  auto watcher = spawn_fn([&reason, w](caf::event_based_actor* self) -> caf::behavior {
    self->monitor(w);
    self->set_down_handler([&reason](caf::down_msg& dm) { reason = dm.reason; });
    return {[](int) {}};
  });
  run();
  caf::anon_send(w, start_atom::value, 4);
  run();
  ASSERT_TRUE(reason);
  EXPECT_NE(sys().render(reason).find("coroutine failed on purpose"), std::string::npos)
      << sys().render(reason);
  caf::anon_send_exit(watcher, caf::exit_reason::user_shutdown);
}

} // namespace
} // namespace aeg::actors
