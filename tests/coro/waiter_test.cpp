#include "coro/manual_executor.hpp"
#include "coro/waiter.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <coroutine>
#include <memory>
#include <thread>
#include <vector>

namespace aeg::coro {
namespace {

TEST(Waiter, AClaimWhileArmingKeepsTheCoroutineRunningWithoutAPost) {
  auto exec = std::make_shared<manual_executor>();
  auto w = std::make_shared<waiter>(std::noop_coroutine(), exec);
  EXPECT_TRUE(w->fire(/*cancelled=*/true)); // e.g. a stop callback that fired during publication
  EXPECT_FALSE(w->arm());                   // so await_suspend returns false
  EXPECT_TRUE(w->cancelled());
  EXPECT_EQ(exec->size(), 0u); // nothing was posted: the coroutine never suspended
  EXPECT_FALSE(w->fire());     // the first claim won
}

TEST(Waiter, AClaimAfterArmingPostsExactlyOneResumption) {
  auto exec = std::make_shared<manual_executor>();
  auto w = std::make_shared<waiter>(std::noop_coroutine(), exec);
  EXPECT_TRUE(w->arm());
  EXPECT_TRUE(w->fire());
  EXPECT_FALSE(w->fire(true));
  EXPECT_FALSE(w->cancelled());
  EXPECT_EQ(exec->size(), 1u);
  EXPECT_EQ(exec->run_all(), 1u);
}

TEST(Waiter, AnAbandonedWaiterIsNeverResumed) {
  auto exec = std::make_shared<manual_executor>();
  auto w = std::make_shared<waiter>(std::noop_coroutine(), exec);
  EXPECT_TRUE(w->arm());
  EXPECT_TRUE(w->claim());
  w->abandon(); // the frame went away between the claim and the post
  w->post();    // a late post finds no frame and queues nothing
  EXPECT_EQ(exec->run_all(), 0u);
  EXPECT_FALSE(w->fire());
}

// Completions race from several threads (a device's driver thread, a stop callback, a timer):
// exactly one claim wins, the resumption is posted once, and the winner's reason is the one kept.
TEST(Waiter, RacingClaimsFromManyThreadsHaveOneWinner) {
  for (int round = 0; round < 200; ++round) {
    auto exec = std::make_shared<manual_executor>();
    auto w = std::make_shared<waiter>(std::noop_coroutine(), exec);
    // Half the rounds arm before the claims, half arm while they race (the awaiter's last act).
    const bool armed_first = round % 2 == 0;
    if (armed_first)
      ASSERT_TRUE(w->arm());
    std::atomic<int> wins{0}, cancelled_wins{0};
    std::atomic<bool> armed{armed_first};
    std::vector<std::thread> threads;
    if (!armed_first)
      threads.emplace_back([&] { armed = w->arm(); });
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        if (w->fire(/*cancelled=*/t % 2 == 1)) {
          ++wins;
          cancelled_wins += t % 2;
        }
      });
    for (auto& t : threads)
      t.join();
    EXPECT_EQ(wins.load(), 1);
    EXPECT_EQ(w->cancelled(), cancelled_wins.load() == 1);
    // Armed before the winning claim: one resumption posted. Claimed while arming: the
    // coroutine went on and nothing was posted.
    EXPECT_EQ(exec->run_all(), armed.load() ? 1u : 0u);
    EXPECT_FALSE(w->arm());
  }
}

} // namespace
} // namespace aeg::coro
