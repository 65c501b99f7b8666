#include "coro/manual_executor.hpp"
#include "coro/sync_wait.hpp"
#include "coro/task.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace aeg::coro {
namespace {

task<int> answer() {
  co_return 42;
}

task<int> add_one(int x) {
  co_return x + 1;
}

task<std::string> concat(std::string a, std::string b) {
  co_return a + b;
}

task<void> thrower() {
  throw std::runtime_error("boom");
  co_return;
}

task<int> rethrows() {
  co_await thrower();
  co_return 1;
}

TEST(Task, IsLazyUntilAwaited) {
  bool started = false;
  auto t = [](bool* s) -> task<int> {
    *s = true;
    co_return 7;
  }(&started);
  EXPECT_FALSE(started);
  EXPECT_EQ(sync_wait(std::move(t)), 7);
  EXPECT_TRUE(started);
}

TEST(Task, ReturnsValuesThroughAwaitChains) {
  EXPECT_EQ(sync_wait(answer()), 42);
  EXPECT_EQ(sync_wait(concat("to", "ken")), "token");
  auto chain = []() -> task<int> {
    co_return co_await add_one(co_await add_one(co_await answer()));
  };
  EXPECT_EQ(sync_wait(chain()), 44);
}

TEST(Task, ExceptionsPropagateToTheAwaiter) {
  EXPECT_THROW(sync_wait(rethrows()), std::runtime_error);
  auto catcher = []() -> task<std::string> {
    try {
      co_await thrower();
    } catch (const std::runtime_error& e) {
      co_return e.what();
    }
    co_return "not thrown";
  };
  EXPECT_EQ(sync_wait(catcher()), "boom");
}

TEST(Task, MoveOnlyValuesAreReturned) {
  auto make = []() -> task<std::unique_ptr<int>> { co_return std::make_unique<int>(5); };
  auto p = sync_wait(make());
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 5);
}

// Symmetric transfer: a million synchronous completions in a row must not grow the stack.
TEST(Task, AMillionAwaitsInARowDoNotGrowTheStack) {
  auto loop = []() -> task<long> {
    long sum = 0;
    for (int i = 0; i < 1'000'000; ++i)
      sum += co_await add_one(0);
    co_return sum;
  };
  EXPECT_EQ(sync_wait(loop()), 1'000'000);
}

task<long> depth(int n) {
  if (n == 0)
    co_return 0;
  co_return 1 + co_await depth(n - 1);
}

TEST(Task, DeepRecursiveChainsCompleteWithoutStackOverflow) {
  EXPECT_EQ(sync_wait(depth(200'000)), 200'000);
}

struct destroy_probe {
  int* destroyed;
  ~destroy_probe() { ++*destroyed; }
};

task<void> suspends_forever(int* destroyed, std::coroutine_handle<>* parked) {
  destroy_probe probe{destroyed};
  struct park {
    std::coroutine_handle<>* slot;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept { *slot = h; }
    void await_resume() const noexcept {}
  };
  co_await park{parked};
}

task<void> outer(int* destroyed, std::coroutine_handle<>* parked) {
  destroy_probe probe{destroyed};
  co_await suspends_forever(destroyed, parked);
}

TEST(Task, DestroyingASuspendedTaskDestroysItsWholeChain) {
  int destroyed = 0;
  std::coroutine_handle<> parked;
  {
    auto t = outer(&destroyed, &parked);
    auto h = t.release();
    h.resume(); // runs until the inner task parks
    ASSERT_TRUE(parked);
    EXPECT_EQ(destroyed, 0);
    h.destroy();
  }
  EXPECT_EQ(destroyed, 2);
}

TEST(Task, DestroyingAnUnstartedTaskRunsNothing) {
  bool started = false;
  {
    auto t = [](bool* s) -> task<void> {
      *s = true;
      co_return;
    }(&started);
  }
  EXPECT_FALSE(started);
}

} // namespace
} // namespace aeg::coro

namespace aeg::coro {
namespace {

// Regression guard for a GCC 12 miscompilation: a temporary with a non-trivial destructor inside
// a co_await expression was destroyed twice. Every construction must meet exactly one destruction.
struct counted {
  static inline int live = 0;
  static inline int destroyed = 0;
  counted() { ++live; }
  counted(const counted&) { ++live; }
  counted(counted&&) noexcept { ++live; }
  ~counted() {
    --live;
    ++destroyed;
  }
};

struct op_with_temporary {
  counted c;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) const { h.resume(); }
  int await_resume() const noexcept { return 1; }
};

task<int> takes_counted(counted) {
  co_return 2;
}

TEST(Task, TemporariesInsideCoAwaitExpressionsAreDestroyedExactlyOnce) {
  counted::live = 0;
  counted::destroyed = 0;
  auto run = []() -> task<int> {
    int sum = 0;
    for (int i = 0; i < 100; ++i) {
      sum += co_await op_with_temporary{counted{}};
      sum += co_await takes_counted(counted{});
    }
    co_return sum;
  };
  EXPECT_EQ(sync_wait(run()), 300);
  EXPECT_EQ(counted::live, 0) << "a temporary was destroyed twice or leaked";
  EXPECT_GE(counted::destroyed, 200);
}

} // namespace
} // namespace aeg::coro
