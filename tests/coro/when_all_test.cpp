#include "tests/support/coro/async_event.hpp"
#include "coro/manual_executor.hpp"
#include "coro/sync_wait.hpp"
#include "tests/support/coro/thread_pool.hpp"
#include "coro/when_all.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace aeg::coro {
namespace {

task<int> square(int x) {
  co_return x* x;
}

task<int> after(async_event* ev, int v) {
  co_await ev->wait();
  co_return v;
}

task<void> set_event(async_event* ev) {
  ev->set();
  co_return;
}

TEST(WhenAll, CollectsValuesInOrder) {
  auto run = []() -> task<std::vector<int>> {
    std::vector<task<int>> ts;
    for (int i = 0; i < 10; ++i)
      ts.push_back(square(i));
    co_return co_await when_all(std::move(ts));
  };
  auto v = sync_wait(run());
  ASSERT_EQ(v.size(), 10u);
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(v[i], i * i);
}

TEST(WhenAll, VariadicMixesTypesAndVoid) {
  auto run = []() -> task<int> {
    async_event ev;
    auto [a, b, c] = co_await when_all(after(&ev, 1), square(3), set_event(&ev));
    (void)c;
    co_return a + b;
  };
  EXPECT_EQ(sync_wait(run()), 10);
}

TEST(WhenAll, WaitsForEveryChildThenRethrowsTheFirstFailure) {
  auto failing = [](int* finished) -> task<int> {
    ++*finished;
    throw std::runtime_error("child failed");
    co_return 0;
  };
  auto counting = [](int* finished) -> task<int> {
    ++*finished;
    co_return 1;
  };
  auto run = [](decltype(failing) f, decltype(counting) c, int* finished) -> task<void> {
    std::vector<task<int>> ts;
    ts.push_back(c(finished));
    ts.push_back(f(finished));
    ts.push_back(c(finished));
    co_await when_all(std::move(ts));
  };
  int finished = 0;
  EXPECT_THROW(sync_wait(run(failing, counting, &finished)), std::runtime_error);
  EXPECT_EQ(finished, 3);
}

TEST(WhenAll, EmptyInputCompletesAtOnce) {
  auto run = []() -> task<size_t> {
    co_return (co_await when_all(std::vector<task<int>>{})).size();
  };
  EXPECT_EQ(sync_wait(run()), 0u);
}

TEST(WhenAll, ChildrenFinishingOnPoolThreadsResumeTheParentOnce) {
  auto pool = std::make_shared<thread_pool>(4);
  auto hop = [](executor to, int v) -> task<int> {
    // Move this child onto the pool, where it finishes.
    struct go {
      executor to;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) { to->post(h); }
      void await_resume() const noexcept {}
    };
    co_await go{to};
    co_return v;
  };
  auto run = [](decltype(hop) h, executor pool) -> task<long> {
    std::vector<task<int>> ts;
    for (int i = 0; i < 200; ++i)
      ts.push_back(h(pool, i));
    auto v = co_await when_all(std::move(ts));
    long sum = 0;
    for (int x : v)
      sum += x;
    co_return sum;
  };
  EXPECT_EQ(sync_wait(run(hop, pool)), 199L * 200 / 2);
  pool->stop();
}

} // namespace
} // namespace aeg::coro
