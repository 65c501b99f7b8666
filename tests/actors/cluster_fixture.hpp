#pragma once

// A front end's pool over `aegaeon worker` processes on loopback: the proxy here, the instances
// theirs. With TLS, the front end and every worker hold certificates of one test CA.

#include "tests/actors/pool_fixture.hpp"
#include "tests/apps/child_process.hpp"

#include <arpa/inet.h>
#include <csignal>
#include <fstream>
#include <netinet/in.h>
#include <regex>
#include <sys/socket.h>
#include <unistd.h>

namespace aeg::actors {

class Cluster : public Pool {
protected:
  explicit Cluster(const tls_maker& tls = {}) : Pool(true, tls) {
    std::ofstream(key()) << "cluster-test-key\n";
  }

  std::string key() const { return (dir_ / "cluster.key").string(); }

  // Starts a worker serving `models` on one CPU device, on `port` (0: a free one); the port it
  // listens on (0: it failed). `split_` workers have two devices instead, a prefill instance on
  // one and a decode instance on the other.
  std::uint16_t worker(const std::string& name, const std::vector<model_spec>& models,
                       std::uint16_t port = 0) {
    const auto topology = (dir_ / (name + ".json")).string();
    {
      std::ofstream t(topology);
      t << R"({"devices": [{"name": "cpu0", "backend": "cpu", "memory_mib": 96})"
        << (split_ ? R"(, {"name": "cpu1", "backend": "cpu", "memory_mib": 96})" : "")
        << R"(], "models": [)";
      for (std::size_t i = 0; i < models.size(); ++i)
        t << (i ? ", " : "") << R"({"name": ")" << models[i].name << R"(", "gguf": ")"
          << models[i].source.model_path << R"("})";
      const char* sizes = R"("kv_mib": 16, "max_batch_tokens": 96, "max_seqs": 16})";
      t << R"(], "instances": [)"
        << (split_ ? std::string(R"({"device": "cpu0", "role": "prefill", )") + sizes +
                         R"(, {"device": "cpu1", "role": "decode", )" + sizes
                   : std::string(R"({"device": "cpu0", )") + sizes)
        << R"(], "host_kv_mib": 64, "slab_mib": 1})";
    }
    std::vector<std::string> args{
        AEG_BINARY, "worker", "--config", topology,   "--cluster-key-file",
        key(),      "--name", name,       "--listen", "127.0.0.1:" + std::to_string(port)};
    args.insert(args.end(), worker_flags_.begin(), worker_flags_.end());
    workers_.push_back(std::make_unique<aeg::testing::child>(args));

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

  // `n` results, worker `w` SIGKILLed once a request has made `tokens` tokens (its work under
  // way); `killed` says whether that moment came.
  auto collect_killing(std::size_t n, std::size_t tokens, bool& killed, std::size_t w = 0) {
    killed = false;
    return collect(n, [&, tokens, w](std::uint64_t, std::size_t made) {
      if (!killed && made == tokens) {
        workers_[w]->signal(SIGKILL);
        killed = true;
      }
    });
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
  std::vector<std::string> worker_flags_; ///< more flags for every worker (its TLS files)
  bool split_ = false; ///< workers run a prefill and a decode instance instead of a colocated one
};

// A port nothing listens on (bound, then closed).
inline std::uint16_t free_port() {
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

} // namespace aeg::actors
