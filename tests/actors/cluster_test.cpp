// A front end's pool over `aegaeon worker` processes on loopback: the proxy here, the instances
// theirs. A worker killed with SIGKILL mid-decode loses nothing: its requests are placed on the
// other workers, prefilled with their prompts and the tokens already sent, and end with the
// tokens they have alone on one instance; the survivors hold no KV afterwards; restarted, the
// worker is joined again and serves.
#include "tests/actors/pool_fixture.hpp"
#include "tests/apps/child_process.hpp"

#include <arpa/inet.h>
#include <csignal>
#include <fstream>
#include <mutex>
#include <netinet/in.h>
#include <regex>
#include <sys/socket.h>
#include <unistd.h>

namespace aeg::actors {
namespace {

class Cluster : public Pool {
protected:
  Cluster() : Pool(true) { std::ofstream(key()) << "cluster-test-key\n"; }

  std::string key() const { return (dir_ / "cluster.key").string(); }

  // Starts a worker serving `models` on one CPU device, on `port` (0: a free one); the port it
  // listens on (0: it failed).
  std::uint16_t worker(const std::string& name, const std::vector<model_spec>& models,
                       std::uint16_t port = 0) {
    const auto topology = (dir_ / (name + ".json")).string();
    {
      std::ofstream t(topology);
      t << R"({"devices": [{"name": "cpu0", "backend": "cpu", "memory_mib": 96}], "models": [)";
      for (std::size_t i = 0; i < models.size(); ++i)
        t << (i ? ", " : "") << R"({"name": ")" << models[i].name << R"(", "gguf": ")"
          << models[i].source.model_path << R"("})";
      t << R"(], "instances": [{"device": "cpu0", "kv_mib": 16, "max_batch_tokens": 96,
             "max_seqs": 16}], "host_kv_mib": 64, "slab_mib": 1})";
    }
    workers_.push_back(std::make_unique<aeg::testing::child>(std::vector<std::string>{
        AEG_BINARY, "worker", "--config", topology, "--cluster-key-file", key(), "--name", name,
        "--listen", "127.0.0.1:" + std::to_string(port)}));
    auto& w = *workers_.back();
    const std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
    std::smatch m;
    w.await([&] {
      return std::regex_search(w.err(), listening) ||
             w.err().find("aegaeon worker: ") != std::string::npos;
    });
    const auto err = w.err();
    EXPECT_TRUE(std::regex_search(err, m, listening)) << err;
    return m.empty() ? 0 : static_cast<std::uint16_t>(std::stoi(m[1]));
  }

  // A front end's spec over workers `names`, each serving `models` (a worker that did not start
  // is reported and left out).
  pool_spec front_over(const std::vector<model_spec>& models,
                       const std::vector<std::string>& names) {
    pool_spec front;
    front.models = models;
    front.cluster_key_file = key();
    for (const auto& name : names)
      if (const auto port = worker(name, models); port != 0)
        front.nodes.push_back({"127.0.0.1", port});
    return front;
  }

  // The instances the proxy counts alive, once they are `n` or the deadline has passed.
  std::size_t alive_after_waiting(pool& p, std::size_t n) {
    std::size_t alive = metrics_of(p).instances_alive;
    for (auto until = aeg::testing::child_clock::now() + aeg::testing::deadline;
         alive < n && aeg::testing::child_clock::now() < until;) {
      (*self_)->receive(caf::after(std::chrono::milliseconds(100)) >> [] {}); // between polls
      alive = metrics_of(p).instances_alive;
    }
    return alive;
  }

  std::vector<std::unique_ptr<aeg::testing::child>> workers_;
};

// A port nothing listens on (bound, then closed).
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

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
  const auto got = collect(reqs.size(), [&](std::uint64_t, std::size_t tokens) {
    if (!killed && tokens == 4) { // decoding is under way
      workers_[0]->signal(SIGKILL);
      killed = true;
    }
  });
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
  const auto got = collect(reqs.size(), [&](std::uint64_t, std::size_t tokens) {
    if (!killed && tokens == 2) {
      workers_[0]->signal(SIGKILL);
      killed = true;
    }
  });
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
