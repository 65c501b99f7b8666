#include "tests/support/coro/async_event.hpp"
#include "coro/async_scope.hpp"
#include "coro/manual_executor.hpp"
#include "coro/sync_wait.hpp"

#include <gtest/gtest.h>

#include <stop_token>
#include <thread>

namespace aeg::coro {
namespace {

task<void> wait_and_count(async_event* ev, int* count, std::stop_token token = {}) {
  co_await ev->wait(token);
  ++*count;
}

TEST(AsyncEvent, ResumesAllWaitersOnTheirExecutorWhenSet) {
  auto exec = std::make_shared<manual_executor>();
  async_event ev;
  async_scope scope;
  int count = 0;
  for (int i = 0; i < 5; ++i)
    scope.spawn(exec, wait_and_count(&ev, &count));
  exec->run_all();
  EXPECT_EQ(count, 0);
  EXPECT_EQ(scope.num_live(), 5u);
  ev.set();
  EXPECT_EQ(count, 0) << "waiters must resume on their executor, not inside set()";
  exec->run_all();
  EXPECT_EQ(count, 5);
  EXPECT_EQ(scope.num_live(), 0u);
}

TEST(AsyncEvent, AlreadySetDoesNotSuspendAndResetBlocksAgain) {
  auto exec = std::make_shared<manual_executor>();
  async_event ev(true);
  async_scope scope;
  int count = 0;
  scope.spawn_now(exec, wait_and_count(&ev, &count));
  EXPECT_EQ(count, 1);
  ev.reset();
  scope.spawn_now(exec, wait_and_count(&ev, &count));
  EXPECT_EQ(count, 1);
  ev.set();
  exec->run_all();
  EXPECT_EQ(count, 2);
}

TEST(AsyncEvent, StopTokenCancelsTheWaitWithCancelledException) {
  auto exec = std::make_shared<manual_executor>();
  async_event ev;
  std::stop_source stop;
  bool cancelled = false;
  async_scope scope;
  auto waiter = [](async_event* e, std::stop_token t, bool* c) -> task<void> {
    try {
      co_await e->wait(t);
    } catch (const cancelled_exception& ex) {
      *c = ex.error().code == errc::cancelled;
    }
  };
  scope.spawn_now(exec, waiter(&ev, stop.get_token(), &cancelled));
  stop.request_stop();
  exec->run_all();
  EXPECT_TRUE(cancelled);
  EXPECT_EQ(scope.num_live(), 0u);
  ev.set(); // the cancelled waiter must not be resumed again
  EXPECT_EQ(exec->run_all(), 0u);
}

TEST(AsyncEvent, SetFromAnotherThreadResumesOnTheWaitersExecutor) {
  async_event ev;
  auto run = [](async_event* e) -> task<std::thread::id> {
    co_await e->wait();
    co_return std::this_thread::get_id();
  };
  std::thread setter([&] { ev.set(); });
  auto resumed_on = sync_wait(run(&ev));
  setter.join();
  EXPECT_TRUE(resumed_on == std::this_thread::get_id());
}

} // namespace
} // namespace aeg::coro
