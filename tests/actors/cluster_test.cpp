// A front end's pool over `aegaeon worker` processes on loopback: the proxy here, the instances
// theirs. A worker killed with SIGKILL mid-decode loses nothing: its requests are placed on the
// other workers, prefilled with their prompts and the tokens already sent, and end with the
// tokens they have alone on one instance; the survivors hold no KV afterwards; restarted, the
// worker is joined again and serves.
#include "tests/actors/cluster_fixture.hpp"

#include <csignal>
#include <fstream>
#include <mutex>

namespace aeg::actors {
namespace {

TEST_F(Cluster, AKilledWorkersRequestsFinishOnTheOthersWithTheirSoloTokens) {
  const auto models = tiny_models(3);
  const auto front = front_over(models, {"node-a", "node-b", "node-c"});
  ASSERT_EQ(front.nodes.size(), 3u);
  const auto reqs = workload(models, 18, 24);
  const auto expected = solo(models, reqs); // one process, one instance per model

  auto& p = start(front);
  ASSERT_TRUE(p.remote());
  ASSERT_EQ(p.instance_names(),
            (std::vector<std::string>{"node-a/cpu0/colocated#0", "node-b/cpu0/colocated#0",
                                      "node-c/cpu0/colocated#0"}));
  ASSERT_TRUE(p.wait_started(*sys_));
  submit(p.proxy(), reqs);
  bool killed = false;
  const auto got = collect_killing(reqs.size(), 4, killed); // decoding is under way
  EXPECT_TRUE(killed);
  expect_solo(got, reqs, expected);
  EXPECT_GT(rerouted(p), 0u); // the killed worker held requests, and they were placed again
  expect_nothing_held(p, {0});

  // Restarted on its port, the worker is joined again and gets requests.
  ASSERT_EQ(worker("node-a", models, front.nodes[0].port), front.nodes[0].port);
  ASSERT_EQ(alive_after_waiting(p, 3), 3u);
  const auto more = workload(models, 9, 8);
  submit(p.proxy(), more);
  for (const auto& [id, o] : collect(more.size()))
    EXPECT_EQ(o.result.reason, finish_reason::length) << o.result.message;
  auto again = join_node(*sys_, "127.0.0.1", front.nodes[0].port, "cluster-test-key");
  ASSERT_TRUE(again.has_value()) << again.error().to_string();
  instance_stats st;
  (*self_)
      ->request(again->instances[0].handle, caf::infinite, stats_atom::value)
      .receive([&](const instance_stats& s) { st = s; },
               [&](caf::error& e) { ADD_FAILURE() << sys_->render(e); });
  EXPECT_GT(st.tokens_generated, 0u);
}

// A worker that stops answering (SIGSTOP: its connection stays open, its heartbeats stop) is
// dropped after the peer timeout, and its requests finish elsewhere as a dead one's do.
TEST_F(Cluster, AHungWorkersRequestsFinishOnTheOthers) {
  const auto models = tiny_models(2);
  const auto front = front_over(models, {"node-a", "node-b"});
  ASSERT_EQ(front.nodes.size(), 2u);
  const auto reqs = workload(models, 8, 24);
  const auto expected = solo(models, reqs);
  auto& p = start(front);
  ASSERT_TRUE(p.wait_started(*sys_));
  submit(p.proxy(), reqs);
  bool stopped = false;
  const auto got = collect(reqs.size(), [&](std::uint64_t, std::size_t tokens) {
    if (!stopped && tokens == 4) {
      workers_[0]->signal(SIGSTOP);
      stopped = true;
    }
  });
  workers_[0]->signal(SIGKILL); // a stopped process takes SIGKILL at once
  EXPECT_TRUE(stopped);
  expect_solo(got, reqs, expected);
  expect_nothing_held(p, {0});
}

// When the only worker of a model dies, its requests end with an error that says so (a client
// sees why its stream stopped), and the front end goes on.
TEST_F(Cluster, ARequestNoNodeCanTakeEndsWithAClearError) {
  const auto models = tiny_models(1);
  const auto front = front_over(models, {"node-a"});
  ASSERT_EQ(front.nodes.size(), 1u);
  auto& p = start(front);
  ASSERT_TRUE(p.wait_started(*sys_));
  const auto reqs = workload(models, 3, 64);
  submit(p.proxy(), reqs);
  bool killed = false;
  const auto got = collect_killing(reqs.size(), 2, killed); // decoding is under way
  for (const auto& [id, o] : got) {
    EXPECT_EQ(o.result.reason, finish_reason::error) << id;
    EXPECT_NE(o.result.message.find("no running instance serves model 'm0'"), std::string::npos)
        << o.result.message;
  }
}

// A node that is down when the front end starts does not stop it while another serves every
// model; it is joined when it comes up.
TEST_F(Cluster, ANodeDownAtTheStartIsJoinedWhenItComesUp) {
  const auto models = tiny_models(1);
  pool_spec front;
  front.models = models;
  front.cluster_key_file = key();
  const auto up = worker("node-a", models);
  ASSERT_NE(up, 0);
  const auto later = free_port();
  front.nodes = {{"127.0.0.1", up}, {"127.0.0.1", later}};
  // The log is written from the starting thread, then from the node's watcher.
  auto said = std::make_shared<std::pair<std::mutex, std::vector<std::string>>>();
  auto started = pool::start(*sys_, front, {}, [said](const std::string& line) {
    std::lock_guard lock(said->first);
    said->second.push_back(line);
  });
  ASSERT_TRUE(started.has_value()) << started.error().to_string();
  {
    std::lock_guard lock(said->first);
    ASSERT_FALSE(said->second.empty());
    EXPECT_NE(said->second[0].find("joining it when it is up"), std::string::npos)
        << said->second[0];
  }
  auto& p = **started;
  ASSERT_EQ(worker("node-b", models, later), later);
  EXPECT_EQ(alive_after_waiting(p, 2), 2u);
}

// A front end whose key is not the workers' gets no instances, and says so.
TEST_F(Cluster, AWrongKeyOrAMissingModelStopsTheFrontEnd) {
  const auto models = tiny_models(2);
  const auto port = worker("node-a", {models[0]});
  ASSERT_NE(port, 0);
  pool_spec front;
  front.models = models;
  front.nodes.push_back({"127.0.0.1", port});
  front.cluster_key_file = (dir_ / "other.key").string();
  std::ofstream(front.cluster_key_file) << "not-the-key\n";
  auto refused = pool::start(*sys_, front);
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().message.find("wrong cluster key"), std::string::npos)
      << refused.error().message;
  front.cluster_key_file = key();
  auto missing = pool::start(*sys_, front);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message.find("model 'm1': no node that is up serves it"),
            std::string::npos)
      << missing.error().message;
}

} // namespace
} // namespace aeg::actors
