// Links between a front end and its workers over TLS (CAF's OpenSSL module). With certificates
// of one CA the pool serves as it does over plain TCP; a peer without a certificate of that CA,
// or speaking plain TCP, is not let in; bad TLS files are refused before anything starts, with
// the file named.
#include "tests/actors/cluster_fixture.hpp"

#include <cstdlib>

namespace aeg::actors {
namespace {

namespace fs = std::filesystem;

// A CA and a certificate for each of `names` in `dir`, by scripts/cluster-certs.
void make_certs(const fs::path& dir, const std::string& names) {
  const auto cmd = std::string(AEG_SOURCE_DIR) + "/scripts/cluster-certs " + dir.string() + " " +
                   names + " >/dev/null";
  if (std::system(cmd.c_str()) != 0)
    throw std::runtime_error(cmd + " failed (is openssl installed? scripts/setup)");
}

cluster_tls tls_of(const fs::path& dir, const std::string& name) {
  return {(dir / (name + ".pem")).string(), (dir / (name + ".key")).string(),
          (dir / "ca.pem").string()};
}

class ClusterTls : public Cluster {
protected:
  ClusterTls()
      : Cluster([](const fs::path& dir) {
          make_certs(dir / "tls", "front node");
          make_certs(dir / "rogue", "front"); // a CA of its own
          return tls_of(dir / "tls", "front");
        }) {
    const auto w = tls_of(dir_ / "tls", "node");
    worker_flags_ = {"--tls-cert", w.certificate, "--tls-key", w.key, "--tls-ca", w.ca};
  }

  // A second front end's actor system, with `tls` (none: plain TCP).
  static std::unique_ptr<caf::actor_system> other_front(caf::actor_system_config& cfg,
                                                        const cluster_tls& tls) {
    cfg.set("logger.verbosity", caf::atom("quiet"));
    enable_network(cfg, tls);
    return std::make_unique<caf::actor_system>(cfg);
  }
};

TEST_F(ClusterTls, WorkersOverTlsServeEveryRequestWithItsSoloTokens) {
  const auto models = tiny_models(2);
  const auto front = front_over(models, {"node-a", "node-b"});
  ASSERT_EQ(front.nodes.size(), 2u);
  const auto reqs = workload(models, 8, 16);
  const auto expected = solo(models, reqs);
  auto& p = start(front);
  ASSERT_TRUE(p.remote());
  ASSERT_TRUE(p.wait_started(*sys_));
  submit(p.proxy(), reqs);
  expect_solo(collect(reqs.size()), reqs, expected);
  expect_nothing_held(p, {});
}

TEST_F(ClusterTls, APeerWithoutACertificateOfTheClustersCaIsNotLetIn) {
  const auto port = worker("node-a", tiny_models(1));
  ASSERT_NE(port, 0);
  {
    caf::actor_system_config cfg;
    const auto rogue = other_front(cfg, tls_of(dir_ / "rogue", "front"));
    auto refused =
        join_node(*rogue, "127.0.0.1", port, "cluster-test-key", std::chrono::seconds(5));
    EXPECT_FALSE(refused.has_value());
  }
  {
    caf::actor_system_config cfg;
    const auto plain = other_front(cfg, {});
    auto refused =
        join_node(*plain, "127.0.0.1", port, "cluster-test-key", std::chrono::seconds(5));
    ASSERT_FALSE(refused.has_value());
    EXPECT_NE(refused.error().message.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
        << refused.error().message;
  }
  // The cluster's own front end still joins.
  auto joined = join_node(*sys_, "127.0.0.1", port, "cluster-test-key");
  ASSERT_TRUE(joined.has_value()) << joined.error().to_string();
  EXPECT_EQ(joined->node, "node-a");
}

TEST_F(ClusterTls, BadTlsFilesAreRefusedNamingTheFile) {
  const auto good = tls_of(dir_ / "tls", "front");
  EXPECT_TRUE(check_tls(good).has_value());
  EXPECT_TRUE(check_tls({}).has_value()); // no TLS at all

  const auto refused = [](const cluster_tls& tls, const std::string& says) {
    auto r = check_tls(tls);
    ASSERT_FALSE(r.has_value()) << says;
    EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
  };
  auto t = good;
  t.key.clear();
  refused(t, "the key is missing");
  t = good;
  t.ca = (dir_ / "absent.pem").string();
  refused(t, "TLS CA certificate '" + t.ca + "': cannot read it");
  t = good;
  t.key = tls_of(dir_ / "tls", "node").key;
  refused(t, "TLS key '" + t.key + "': not the key of the certificate");
  t = tls_of(dir_ / "rogue", "front");
  t.ca = good.ca;
  refused(t, "TLS certificate '" + t.certificate + "': not accepted with the CA certificate");
  t = good;
  t.certificate = (dir_ / "garbage.pem").string();
  std::ofstream(t.certificate) << "-----BEGIN CERTIFICATE-----\nnot base64\n";
  refused(t, "TLS certificate '" + t.certificate + "': not a PEM certificate");
}

} // namespace
} // namespace aeg::actors
