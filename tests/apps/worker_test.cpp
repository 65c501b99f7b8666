// `aegaeon worker` as its own process: a front end that presents the cluster key gets the node's
// instances as remote actors over CAF's network layer, they generate what a local instance of the
// same model generates, a wrong key gets nothing, and the node's death reaches a monitor.
#include "actors/cluster.hpp"
#include "actors/pool.hpp"
#include "actors/runtime_config.hpp"
#include "tests/apps/cli_support.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <arpa/inet.h>
#include <fstream>
#include <netinet/in.h>
#include <regex>
#include <sys/socket.h>
#include <unistd.h>

namespace aeg::actors {
namespace {

using aeg::testing::child;
using aeg::testing::tiny_model_dir;

// Greedy tokens of one request through `instance`, received by a blocking actor of the test.
std::vector<std::int32_t> tokens_of(caf::actor_system& sys, const instance_actor& instance) {
  caf::scoped_actor self{sys};
  generation_request r;
  r.id = 1;
  r.model = "tiny";
  r.prompt = {1, 2, 3, 4, 5, 6, 7};
  r.max_tokens = 12;
  r.sink = caf::actor_cast<generation_sink>(self);
  self->send(instance, generate_atom::value, r);
  std::vector<std::int32_t> out;
  for (bool done = false; !done;)
    self->receive(
        [&](token_atom, std::uint64_t id, std::int32_t t, const aeg::models::token_logprobs&) {
          EXPECT_EQ(id, 1u);
          out.push_back(t);
        },
        [&](done_atom, const generation_result& res) {
          EXPECT_EQ(res.reason, finish_reason::length) << res.message;
          EXPECT_EQ(res.completion_tokens, 12u);
          done = true;
        },
        caf::after(aeg::testing::deadline) >>
            [&] {
              ADD_FAILURE() << "no end of the request";
              done = true;
            });
  return out;
}

// A worker of the tiny model in `models` ("tiny", one colocated instance) with `key` (written
// to a file there); `port` gets the port it listens on (0 when it failed).
std::unique_ptr<child> start_worker(const tiny_model_dir& models, const std::string& key_text,
                                    std::uint16_t& port) {
  const auto key = models.dir() + "/cluster.key";
  std::ofstream(key) << key_text << "\n";
  const auto topology = models.dir() + "/node.json";
  std::ofstream(topology) << R"({"devices": [{"name": "cpu0", "backend": "cpu", "memory_mib": 256}],
    "models": [{"name": "tiny", "gguf": ")"
                          << models.model() << R"("}], "instances": [{"device": "cpu0"}]})";
  auto worker = std::make_unique<child>(
      std::vector<std::string>{AEG_BINARY, "worker", "--config", topology, "--listen",
                               "127.0.0.1:0", "--cluster-key-file", key, "--name", "node-a"});
  std::smatch m;
  const std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
  worker->await([&] {
    return std::regex_search(worker->err(), listening) ||
           worker->err().find("aegaeon worker: ") != std::string::npos;
  });
  const auto err = worker->err();
  EXPECT_TRUE(std::regex_search(err, m, listening)) << err;
  port = m.empty() ? 0 : static_cast<std::uint16_t>(std::stoi(m[1]));
  return worker;
}

// The whole answer to a GET of `path` on 127.0.0.1:`port` (empty when it cannot connect).
std::string http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const auto req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
        out.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

TEST(Worker, AFrontEndWithTheKeyGetsRemoteInstancesThatGenerateAsLocalOnesDo) {
  tiny_model_dir models("aegaeon_worker");
  ASSERT_TRUE(models.ok());
  std::uint16_t port = 0;
  auto worker_process = start_worker(models, "s3cret-key", port);
  ASSERT_NE(port, 0);
  auto& worker = *worker_process;
  const auto topology = models.dir() + "/node.json";

  caf::actor_system_config cfg;
  actors::configure_runtime(cfg); // as our processes run CAF
  enable_network(cfg);
  caf::actor_system sys{cfg};
  auto refused = join_node(sys, "127.0.0.1", port, "guess");
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().message.find("wrong cluster key"), std::string::npos)
      << refused.error().message;
  auto info = join_node(sys, "127.0.0.1", port, "s3cret-key");
  ASSERT_TRUE(info.has_value()) << info.error().to_string();
  EXPECT_EQ(info->node, "node-a");
  ASSERT_EQ(info->instances.size(), 1u);
  EXPECT_EQ(info->instances[0].models, std::vector<std::string>{"tiny"});
  EXPECT_EQ(info->instances[0].role, "colocated");
  const auto remote = info->instances[0].handle;

  // The same request through the remote instance and through a local pool of the same node.
  const auto far = tokens_of(sys, remote);
  auto spec = load_topology(topology);
  ASSERT_TRUE(spec.has_value()) << spec.error().to_string();
  auto local = pool::start(sys, *spec);
  ASSERT_TRUE(local.has_value()) << local.error().to_string();
  ASSERT_TRUE((*local)->wait_started(sys));
  EXPECT_EQ(far, tokens_of(sys, (*local)->instances()[0]));
  EXPECT_EQ(far.size(), 12u);
  local->reset();

  // A killed worker: the front end's monitor hears of it.
  caf::scoped_actor self{sys};
  self->monitor(remote);
  worker.signal(SIGKILL);
  bool down = false;
  self->receive([&](const caf::down_msg&) { down = true; },
                caf::after(aeg::testing::deadline) >> [] {});
  EXPECT_TRUE(down);
}

// `aegaeon serve` as a front end: its topology names the worker, and a chat over HTTP is
// answered by the worker's instance.
TEST(Worker, ServeAsAFrontEndAnswersThroughAWorker) {
  tiny_model_dir models("aegaeon_worker_front");
  ASSERT_TRUE(models.ok());
  std::uint16_t port = 0;
  auto worker = start_worker(models, "front-key", port);
  const auto key = models.dir() + "/cluster.key";
  ASSERT_NE(port, 0);
  const auto front = models.dir() + "/front.json";
  std::ofstream(front) << R"({"nodes": [{"address": "127.0.0.1:)" << port
                       << R"("}], "cluster_key_file": ")" << key
                       << R"(", "models": [{"name": "tiny", "gguf": ")" << models.model()
                       << R"("}]})";
  aeg::testing::serving server(models, {"--config", front});
  ASSERT_NE(server.port(), 0) << server.process().err();
  EXPECT_NE(server.process().err().find("joining 1 node(s)"), std::string::npos)
      << server.process().err();
  EXPECT_NE(server.process().err().find("joined instance node-a/cpu0/colocated#0"),
            std::string::npos)
      << server.process().err();
  const auto chat =
      aeg::testing::run("chat --url http://127.0.0.1:" + std::to_string(server.port()) +
                            " --model tiny --max-tokens 4",
                        "echo hi | ");
  EXPECT_EQ(chat.rc, 0) << chat.output;
  // /metrics reports the worker's instance by its node's name, with its figures.
  const auto metrics = http_get(server.port(), "/metrics");
  EXPECT_NE(metrics.find(R"(aegaeon_instance_up{instance="node-a/cpu0/colocated#0"} 1)"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find(R"(aegaeon_model_resident{instance="node-a/cpu0/colocated#0")"),
            std::string::npos)
      << metrics;
  server.process().signal(SIGINT);
  EXPECT_EQ(server.process().wait(), 0) << server.process().err();
  // The front end's end leaves the worker running; SIGINT stops it cleanly.
  worker->signal(SIGINT);
  EXPECT_EQ(worker->wait(), 0) << worker->err();
  EXPECT_NE(worker->err().find("stopping on SIGINT"), std::string::npos) << worker->err();
}

} // namespace
} // namespace aeg::actors
