#include "coro/async_scope.hpp"
#include "coro/completion.hpp"
#include "coro/manual_executor.hpp"
#include "coro/sync_wait.hpp"
#include "tests/support/coro/thread_pool.hpp"
#include "coro/when_all.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace aeg::coro {
namespace {

TEST(Completion, ValueSetBeforeAwaitDoesNotSuspend) {
  auto [done, fired] = make_completion<int>();
  EXPECT_TRUE(done.set_value(5));
  EXPECT_FALSE(done.set_value(6)) << "only the first completion wins";
  auto run = [](completion<int> c) -> task<int> { co_return co_await std::move(c); };
  EXPECT_EQ(sync_wait(run(std::move(fired))), 5);
}

TEST(Completion, ErrorIsRethrownOrReturnedAsResult) {
  auto [d1, f1] = make_completion<int>();
  d1.set_error(error{errc::device_error, "kernel failed"});
  auto throws = [](completion<int> c) -> task<int> { co_return co_await std::move(c); };
  EXPECT_THROW(sync_wait(throws(std::move(f1))), error_exception);

  auto [d2, f2] = make_completion<int>();
  d2.set_error(error{errc::timeout, "late"});
  auto as_value = [](completion<int> c) -> task<result<int>> {
    co_return co_await std::move(c).as_result();
  };
  auto r = sync_wait(as_value(std::move(f2)));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, errc::timeout);
}

TEST(Completion, DroppedCompleterEndsTheWaitWithCancelled) {
  auto run = []() -> task<result<void>> {
    auto [done, fired] = make_completion<void>();
    std::thread([d = std::move(done)] {}).join(); // the callback is dropped unfired
    co_return co_await std::move(fired).as_result();
  };
  auto r = sync_wait(run());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, errc::cancelled);
}

// Completions fired from many foreign threads, racing the awaiters' suspension, each resume their
// coroutine exactly once and on the awaiting executor.
TEST(Completion, RacingCompletionsFromOtherThreadsResumeOnTheAwaitingExecutor) {
  constexpr int n = 2000;
  auto pool = std::make_shared<thread_pool>(2);
  std::vector<completer<int>> completers;
  std::vector<completion<int>> completions;
  for (int i = 0; i < n; ++i) {
    auto [d, f] = make_completion<int>();
    completers.push_back(std::move(d));
    completions.push_back(std::move(f));
  }
  std::atomic<int> go{0};
  std::vector<std::thread> firers;
  for (int t = 0; t < 4; ++t)
    firers.emplace_back([&, t] {
      while (go.load() == 0) {
      }
      for (int i = t; i < n; i += 4)
        completers[i].set_value(i);
    });
  auto awaiter = [](completion<int> c) -> task<std::pair<int, std::thread::id>> {
    int v = co_await std::move(c);
    co_return std::pair{v, std::this_thread::get_id()};
  };
  auto run = [](decltype(awaiter) a, std::vector<completion<int>> cs,
                std::atomic<int>* go) -> task<std::vector<std::pair<int, std::thread::id>>> {
    std::vector<task<std::pair<int, std::thread::id>>> ts;
    for (auto& c : cs)
      ts.push_back(a(std::move(c)));
    go->store(1);
    co_return co_await when_all(std::move(ts));
  };
  auto results = sync_wait(run(awaiter, std::move(completions), &go));
  for (auto& f : firers)
    f.join();
  ASSERT_EQ(results.size(), static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(results[i].first, i);
    EXPECT_TRUE(results[i].second == std::this_thread::get_id());
  }
  pool->stop();
}

} // namespace
} // namespace aeg::coro
