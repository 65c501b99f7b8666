#include "coro/async_scope.hpp"
#include "coro/channel.hpp"
#include "coro/manual_executor.hpp"
#include "coro/sync_wait.hpp"
#include "coro/thread_pool.hpp"
#include "coro/when_all.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace aeg::coro {
namespace {

task<void> produce(channel<int>* ch, int from, int n) {
  for (int i = from; i < from + n; ++i)
    co_await ch->send(i);
}

task<void> consume(channel<int>* ch, std::vector<int>* out) {
  while (auto v = co_await ch->receive())
    out->push_back(*v);
}

TEST(Channel, SenderWaitsWhileFullAndValuesKeepTheirOrder) {
  auto exec = std::make_shared<manual_executor>();
  channel<int> ch(2);
  async_scope scope;
  scope.spawn_now(exec, produce(&ch, 0, 5));
  EXPECT_EQ(ch.size(), 2u) << "the producer must stop at the capacity";
  EXPECT_EQ(scope.num_live(), 1u);
  std::vector<int> got;
  scope.spawn_now(exec, consume(&ch, &got));
  exec->run_all();
  ch.close();
  exec->run_all();
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(scope.num_live(), 0u);
}

TEST(Channel, CloseWakesReceiversWithNulloptAndFailsSenders) {
  auto exec = std::make_shared<manual_executor>();
  channel<int> ch(1);
  async_scope scope;
  std::vector<int> got;
  scope.spawn_now(exec, consume(&ch, &got));
  ch.close();
  exec->run_all();
  EXPECT_EQ(scope.num_live(), 0u);
  auto send_after_close = [](channel<int>* c) -> task<void> { co_await c->send(1); };
  try {
    sync_wait(send_after_close(&ch));
    FAIL() << "send on a closed channel must fail";
  } catch (const error_exception& e) {
    EXPECT_EQ(e.error().code, errc::closed);
  }
}

TEST(Channel, CancelledReceiverIsSkippedAndLosesNothing) {
  auto exec = std::make_shared<manual_executor>();
  channel<int> ch(4);
  std::stop_source stop;
  bool cancelled = false;
  auto receiver = [](channel<int>* c, std::stop_token t, bool* cancelled) -> task<void> {
    try {
      co_await c->receive(t);
    } catch (const cancelled_exception&) {
      *cancelled = true;
    }
  };
  async_scope scope;
  scope.spawn_now(exec, receiver(&ch, stop.get_token(), &cancelled));
  stop.request_stop();
  exec->run_all();
  EXPECT_TRUE(cancelled);
  int v = 9;
  EXPECT_TRUE(ch.try_send(v));
  auto got = ch.try_receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, 9);
}

TEST(Channel, ManyProducersAndConsumersOnAPoolLoseNothing) {
  auto pool = std::make_shared<thread_pool>(3);
  channel<int> ch(8);
  constexpr int producers = 4, per_producer = 2000, consumers = 3;
  std::vector<std::vector<int>> outs(consumers);
  auto run = [](channel<int>* c, std::vector<std::vector<int>>* outs) -> task<void> {
    std::vector<task<void>> ps;
    for (int p = 0; p < producers; ++p)
      ps.push_back(produce(c, p * per_producer, per_producer));
    std::vector<task<void>> cs;
    for (auto& o : *outs)
      cs.push_back(consume(c, &o));
    auto close_after = [](channel<int>* c, std::vector<task<void>> ps) -> task<void> {
      co_await when_all(std::move(ps));
      c->close();
    };
    cs.push_back(close_after(c, std::move(ps)));
    co_await when_all(std::move(cs));
  };
  async_scope scope;
  scope.spawn(pool, run(&ch, &outs));
  sync_wait([](async_scope* s) -> task<void> { co_await s->join(); }(&scope));
  pool->stop();
  std::vector<int> all;
  for (auto& o : outs)
    all.insert(all.end(), o.begin(), o.end());
  std::sort(all.begin(), all.end());
  std::vector<int> expected(producers * per_producer);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(all, expected);
}

} // namespace
} // namespace aeg::coro
