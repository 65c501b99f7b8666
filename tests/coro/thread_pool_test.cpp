#include "coro/async_scope.hpp"
#include "coro/sync_wait.hpp"
#include "tests/support/coro/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <set>
#include <thread>

namespace aeg::coro {
namespace {

TEST(ThreadPool, RunsEveryPostedItem) {
  auto pool = std::make_shared<thread_pool>(3);
  std::atomic<int> ran{0};
  std::latch all(10000);
  for (int i = 0; i < 10000; ++i)
    pool->post(work{[&] {
      ran.fetch_add(1);
      all.count_down();
    }});
  all.wait();
  pool->stop();
  EXPECT_EQ(ran.load(), 10000);
}

TEST(ThreadPool, WorkPostedAfterStopIsDroppedNotRun) {
  auto pool = std::make_shared<thread_pool>(1);
  pool->stop();
  bool ran = false;
  pool->post(work{[&] { ran = true; }});
  EXPECT_FALSE(ran);
}

TEST(ThreadPool, SpawnedTasksRunOnPoolThreads) {
  auto pool = std::make_shared<thread_pool>(2);
  std::thread::id main_id = std::this_thread::get_id();
  std::atomic<bool> on_main{false};
  async_scope scope;
  for (int i = 0; i < 50; ++i)
    scope.spawn(pool, [](std::thread::id m, std::atomic<bool>* bad) -> task<void> {
      if (std::this_thread::get_id() == m)
        bad->store(true);
      co_return;
    }(main_id, &on_main));
  sync_wait([](async_scope* s) -> task<void> { co_await s->join(); }(&scope));
  pool->stop();
  EXPECT_FALSE(on_main.load());
}

} // namespace
} // namespace aeg::coro
