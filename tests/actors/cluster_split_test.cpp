// Workers whose devices are split into prefill and decode instances, behind one front end: the
// front end's proxy runs their prefill lanes, and each hand-off stays inside its node (the
// prefill instance parks the decode job, KV included, at its node's desk, and the request actor
// has the desk give it to a decode instance of that node). A worker killed mid-decode loses
// nothing, and restarted it takes its prefill lane back.
#include "tests/actors/cluster_fixture.hpp"

namespace aeg::actors {
namespace {

class ClusterSplit : public Cluster {
protected:
  ClusterSplit() { split_ = true; }
};

TEST_F(ClusterSplit, HandOffsStayInTheirNodeAndAKilledWorkerLosesNothing) {
  const auto models = tiny_models(3);
  const auto front = front_over(models, {"node-a", "node-b"});
  ASSERT_EQ(front.nodes.size(), 2u);
  const auto reqs = workload(models, 12, 24);
  const auto expected = solo(models, reqs);

  auto& p = start(front);
  ASSERT_EQ(p.instance_names(),
            (std::vector<std::string>{"node-a/cpu0/prefill#0", "node-a/cpu1/decode#1",
                                      "node-b/cpu0/prefill#0", "node-b/cpu1/decode#1"}));
  ASSERT_TRUE(p.wait_started(*sys_));
  // Every request is prefilled on one node and decoded on the same one: a job sent to another
  // node's decode instance could not cross (it holds the KV), so all of them would fail.
  submit(p.proxy(), reqs);
  expect_solo(collect(reqs.size()), reqs, expected);
  expect_nothing_held(p);

  submit(p.proxy(), reqs);
  bool killed = false;
  const auto got = collect_killing(reqs.size(), 4, killed); // decoding is under way
  EXPECT_TRUE(killed);
  expect_solo(got, reqs, expected);
  expect_nothing_held(p, {0, 1});

  // Restarted on its port, the worker is joined again: its prefill instance takes its lane back,
  // and its instances get work.
  ASSERT_EQ(worker("node-a", models, front.nodes[0].port), front.nodes[0].port);
  ASSERT_EQ(alive_after_waiting(p, 4), 4u);
  const auto more = workload(models, 12, 8);
  submit(p.proxy(), more);
  for (const auto& [id, o] : collect(more.size()))
    EXPECT_EQ(o.result.reason, finish_reason::length) << o.result.message;
  auto again = join_node(*sys_, "127.0.0.1", front.nodes[0].port, "cluster-test-key");
  ASSERT_TRUE(again.has_value()) << again.error().to_string();
  for (const auto& inst : again->instances) {
    instance_stats st;
    (*self_)
        ->request(inst.handle, caf::infinite, stats_atom::value)
        .receive([&](const instance_stats& s) { st = s; },
                 [&](caf::error& e) { ADD_FAILURE() << sys_->render(e); });
    EXPECT_GT(st.tokens_generated, 0u) << inst.name;
  }
}

} // namespace
} // namespace aeg::actors
