#include "coro/manual_executor.hpp"
#include "coro/waiter.hpp"

#include <gtest/gtest.h>

#include <coroutine>
#include <memory>

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

} // namespace
} // namespace aeg::coro
