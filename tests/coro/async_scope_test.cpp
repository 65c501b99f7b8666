#include "tests/support/coro/async_event.hpp"
#include "coro/async_scope.hpp"
#include "coro/completion.hpp"
#include "coro/manual_executor.hpp"
#include "coro/sync_wait.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>

namespace aeg::coro {
namespace {

struct destroy_probe {
  int* destroyed;
  ~destroy_probe() { ++*destroyed; }
};

task<void> wait_on(async_event* ev, int* destroyed) {
  destroy_probe p{destroyed};
  co_await ev->wait();
}

TEST(AsyncScope, JoinWaitsForEverySpawnedTask) {
  auto exec = std::make_shared<manual_executor>();
  async_event ev;
  int destroyed = 0;
  async_scope scope;
  for (int i = 0; i < 3; ++i)
    scope.spawn(exec, wait_on(&ev, &destroyed));
  bool joined = false;
  async_scope joiner;
  joiner.spawn(exec, [](async_scope* s, bool* j) -> task<void> {
    co_await s->join();
    *j = true;
  }(&scope, &joined));
  exec->run_all();
  EXPECT_FALSE(joined);
  ev.set();
  exec->run_all();
  EXPECT_TRUE(joined);
  EXPECT_EQ(destroyed, 3);
}

TEST(AsyncScope, JoinRethrowsTheFirstFailure) {
  auto exec = std::make_shared<manual_executor>();
  async_scope scope;
  scope.spawn(exec, []() -> task<void> {
    throw std::logic_error("first");
    co_return;
  }());
  scope.spawn(exec, []() -> task<void> { co_return; }());
  exec->run_all();
  EXPECT_THROW(sync_wait([](async_scope* s) -> task<void> { co_await s->join(); }(&scope)),
               std::logic_error);
}

TEST(AsyncScope, ErrorHandlerSeesFailuresButNotCancellations) {
  auto exec = std::make_shared<manual_executor>();
  int failures = 0;
  async_scope scope([&](std::exception_ptr) { ++failures; });
  scope.spawn(exec, []() -> task<void> {
    throw std::runtime_error("bad");
    co_return;
  }());
  async_event never;
  scope.spawn(exec, [](async_event* e, std::stop_token t) -> task<void> {
    co_await e->wait(t);
  }(&never, scope.stop_token()));
  exec->run_all();
  scope.request_stop();
  exec->run_all();
  EXPECT_EQ(failures, 1);
  EXPECT_EQ(scope.num_live(), 0u);
}

TEST(AsyncScope, DestroyingSuspendedRootsDestroysTheirFrames) {
  auto exec = std::make_shared<manual_executor>();
  async_event ev;
  int destroyed = 0;
  {
    async_scope scope;
    for (int i = 0; i < 4; ++i)
      scope.spawn(exec, wait_on(&ev, &destroyed));
    exec->run_all();
    EXPECT_EQ(destroyed, 0);
  }
  EXPECT_EQ(destroyed, 4);
  ev.set(); // abandoned waiters: nothing resumes
  EXPECT_EQ(exec->run_all(), 0u);
}

// A completion that fires from another thread after its awaiting frame was destroyed must not
// touch the frame (ASan would flag a use-after-free).
TEST(AsyncScope, LateCompletionAfterDestroyIsDropped) {
  auto exec = std::make_shared<manual_executor>();
  auto [done, fired] = make_completion<int>();
  int destroyed = 0;
  auto waiter = [](completion<int> c, int* destroyed) -> task<void> {
    destroy_probe p{destroyed};
    int v = co_await std::move(c);
    (void)v;
    ADD_FAILURE() << "a destroyed frame was resumed";
  };
  {
    async_scope scope;
    scope.spawn_now(exec, waiter(std::move(fired), &destroyed));
    scope.destroy_suspended();
  }
  EXPECT_EQ(destroyed, 1);
  std::thread late([d = done] { d.set_value(3); });
  late.join();
  exec->run_all();
}

} // namespace
} // namespace aeg::coro
