#include "actors/cluster.hpp"

#include "actors/wire.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/publish.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

namespace aeg::actors {

result<std::string> read_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return fail(errc::not_found, std::string("cannot read it (") + std::strerror(errno) + ")");
  std::string key;
  std::getline(in, key);
  while (!key.empty() && (key.back() == '\r' || key.back() == ' ' || key.back() == '\t'))
    key.pop_back();
  if (key.find_first_not_of(" \t") == std::string::npos)
    return fail(errc::invalid_argument, "its first line holds no key");
  return key;
}

result<std::pair<std::string, std::uint16_t>> parse_address(const std::string& text,
                                                            bool zero_port) {
  const auto bad = [&] {
    return fail(errc::invalid_argument, "'" + text + "' is not HOST:PORT (e.g. 10.0.0.2:7000" +
                                            (zero_port ? "; port 0 picks a free one)" : ")"));
  };
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return bad();
  auto host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const auto port = text.substr(colon + 1);
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < (zero_port ? 0 : 1) || p > 65535)
    return bad();
  return std::pair{host, static_cast<std::uint16_t>(p)};
}

namespace {

// OpenSSL's queued errors, as one line (and the queue emptied).
std::string openssl_errors() {
  std::string out;
  while (const auto e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out.empty() ? "no reason given" : out;
}

} // namespace

result<void> check_tls(const cluster_tls& tls) {
  if (!tls.enabled())
    return {};
  const std::pair<const char*, const std::string*> files[] = {
      {"certificate", &tls.certificate}, {"key", &tls.key}, {"CA certificate", &tls.ca}};
  for (const auto& [what, path] : files) {
    if (path->empty())
      return fail(errc::invalid_argument, std::string("TLS needs this node's certificate, its key "
                                                      "and the CA's certificate; the ") +
                                              what + " is missing");
    if (!std::ifstream(*path))
      return fail(errc::not_found, std::string("TLS ") + what + " '" + *path +
                                       "': cannot read it (" + std::strerror(errno) + ")");
  }
  ERR_clear_error();
  const std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{SSL_CTX_new(TLS_method()),
                                                              SSL_CTX_free};
  if (!ctx)
    return fail(errc::internal, "cannot set up TLS: " + openssl_errors());
  // A key with a passphrase is refused rather than asked for on the terminal.
  SSL_CTX_set_default_passwd_cb(ctx.get(), [](char*, int, int, void*) { return 0; });
  const auto bad = [](const std::string& what, const std::string& path, const std::string& why) {
    return fail(errc::invalid_argument, "TLS " + what + " '" + path + "': " + why);
  };
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.certificate.c_str()) != 1)
    return bad("certificate", tls.certificate, "not a PEM certificate (" + openssl_errors() + ")");
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1) {
    const auto reason = ERR_GET_REASON(ERR_peek_last_error());
    const bool other = reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH;
    const auto why = openssl_errors();
    return bad("key", tls.key,
               other ? "not the key of the certificate '" + tls.certificate + "'"
                     : "not an unencrypted PEM private key (" + why + ")");
  }
  if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca.c_str(), nullptr) != 1)
    return bad("CA certificate", tls.ca, "not a PEM certificate (" + openssl_errors() + ")");
  const std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> verify{X509_STORE_CTX_new(),
                                                                               X509_STORE_CTX_free};
  X509* const cert = SSL_CTX_get0_certificate(ctx.get());
  STACK_OF(X509)* chain = nullptr;
  SSL_CTX_get0_chain_certs(ctx.get(), &chain);
  if (!verify ||
      X509_STORE_CTX_init(verify.get(), SSL_CTX_get_cert_store(ctx.get()), cert, chain) != 1)
    return fail(errc::internal, "cannot check the certificate: " + openssl_errors());
  if (X509_verify_cert(verify.get()) != 1)
    return bad("certificate", tls.certificate,
               std::string("not accepted with the CA certificate '") + tls.ca + "' (" +
                   X509_verify_cert_error_string(X509_STORE_CTX_get_error(verify.get())) +
                   "): nodes would refuse each other");
  return {};
}

void enable_network(caf::actor_system_config& cfg, const cluster_tls& tls) {
  cfg.load<caf::io::middleman>();
  if (tls.enabled()) {
    cfg.load<caf::openssl::manager>();
    cfg.openssl_certificate = tls.certificate;
    cfg.openssl_key = tls.key;
    cfg.openssl_cafile = tls.ca;
  }
  // Nodes greet each other every second; one not heard from for `peer_timeout` is dropped, so
  // that a hung or unreachable worker is noticed (its actors' monitors fire) like a dead one.
  cfg.set("middleman.heartbeat-interval", caf::timespan{std::chrono::seconds(1)});
  cfg.set("middleman.connection-timeout", caf::timespan{peer_timeout});
  add_message_types(cfg);
  cfg.add_message_type<node_info>("aeg::node_info");
  cfg.add_message_type<node_actor>("aeg::node_actor");
}

result<std::uint16_t> publish_node(caf::actor_system& sys, const node_actor& node,
                                   const std::string& host, std::uint16_t port) {
  auto bound = sys.has_openssl_manager() ? caf::openssl::publish(node, port, host.c_str(), true)
                                         : sys.middleman().publish(node, port, host.c_str(), true);
  if (!bound)
    return fail(errc::unavailable, "cannot listen on " + host + ":" + std::to_string(port) + ": " +
                                       sys.render(bound.error()));
  return *bound;
}

result<node_info> join_node(caf::actor_system& sys, const std::string& host, std::uint16_t port,
                            const std::string& key, std::chrono::seconds timeout) {
  const auto where = host + ":" + std::to_string(port);
  const bool tls = sys.has_openssl_manager();
  auto mm = tls ? sys.openssl_manager().actor_handle() : sys.middleman().actor_handle();
  caf::scoped_actor self{sys};
  // Connecting through the network layer's actor with a deadline: a peer that accepts but never
  // greets (one side speaks TLS, the other not) is given up on instead of waited for forever.
  result<node_actor> node = fail(errc::unavailable, "");
  self->request(mm, timeout, caf::connect_atom::value, host, port)
      .receive(
          [&](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
            if (ptr)
              node = caf::actor_cast<node_actor>(std::move(ptr));
            else
              node = fail(errc::unavailable,
                          "cannot reach the node at " + where + ": nothing is published there");
          },
          [&](caf::error& e) {
            node = fail(errc::unavailable,
                        "cannot reach the node at " + where + ": " + sys.render(e) +
                            (e == caf::sec::request_timeout
                                 ? std::string(" (does one side use TLS and the other not? This "
                                               "end ") +
                                       (tls ? "does" : "does not") + ")"
                                 : ""));
          });
  if (!node)
    return tl::unexpected(node.error());
  result<node_info> out = fail(errc::timeout, "the node at " + where + " did not answer");
  self->request(*node, timeout, join_atom::value, key)
      .receive([&](node_info& info) { out = std::move(info); },
               [&](caf::error& e) {
                 // It answered: a refusal (a wrong key) is a setting to fix, not an outage.
                 out = fail(e.category() == caf::atom("system") ? errc::unavailable
                                                                : errc::invalid_argument,
                            "the node at " + where + " refused to join: " + sys.render(e));
               });
  return out;
}

namespace {

using rejoin_atom = caf::atom_constant<caf::atom("rejoin")>;

struct watch_state {
  std::string host;
  std::uint16_t port = 0;
  std::string key, node;
  std::vector<std::string> models;
  std::function<void(const std::string&)> log;
  std::set<caf::actor_addr> live; ///< the node's instances the proxy uses
  caf::timespan wait{first_rejoin};
};

caf::behavior watcher(caf::stateful_actor<watch_state>* self, proxy_actor proxy, node_info info,
                      watch_state init) {
  self->state = std::move(init);
  auto say = [self](const std::string& line) {
    if (self->state.log)
      self->state.log(line);
  };
  // Monitors the node's instances that serve the front end's models; with `add`, gives them to
  // the proxy too. Returns how many.
  auto take = [self, proxy](node_info& joined, bool add) {
    std::size_t n = 0;
    for (auto& inst : joined.instances) {
      std::erase_if(inst.models, [&](const std::string& m) {
        return std::find(self->state.models.begin(), self->state.models.end(), m) ==
               self->state.models.end();
      });
      const auto role = role_named(inst.role);
      if (inst.models.empty() || !role)
        continue;
      self->monitor(inst.handle);
      self->state.live.insert(inst.handle.address());
      if (add)
        self->send(proxy, add_member_atom::value,
                   pool_member{inst.handle, *role, inst.models, joined.node + "/" + inst.name, 0,
                               joined.node});
      ++n;
    }
    return n;
  };
  auto retry = [self, say](const std::string& why) {
    say("node " + self->state.node + " (" + self->state.host + ":" +
        std::to_string(self->state.port) + "): " + why + "; trying again in " +
        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(self->state.wait).count()) +
        " s");
    self->delayed_send(self, self->state.wait, rejoin_atom::value);
    self->state.wait = std::min<caf::timespan>(self->state.wait * 2, longest_rejoin);
  };
  if (take(info, false) == 0) // not reachable when the front end started
    retry("not joined");
  self->set_down_handler([self, say, retry](caf::down_msg& d) {
    if (self->state.live.erase(d.source) == 0 || !self->state.live.empty())
      return;
    say("lost node " + self->state.node + ": its requests go to the other instances");
    self->state.wait = first_rejoin;
    retry("not joined");
  });
  return {[self, say, retry, take](rejoin_atom) {
    auto& sys = self->system();
    auto mm = sys.has_openssl_manager() ? sys.openssl_manager().actor_handle()
                                        : sys.middleman().actor_handle();
    self->request(mm, std::chrono::seconds(10), caf::connect_atom::value, self->state.host,
                  self->state.port)
        .then(
            [self, say, retry, take](const caf::node_id&, caf::strong_actor_ptr& ptr,
                                     const std::set<std::string>&) {
              if (!ptr) {
                retry("nothing is published there");
                return;
              }
              self->request(caf::actor_cast<node_actor>(ptr), std::chrono::seconds(10),
                            join_atom::value, self->state.key)
                  .then(
                      [self, say, take](node_info& joined) {
                        self->state.node = joined.node;
                        const auto n = take(joined, true);
                        say("joined node " + joined.node + " again: " + std::to_string(n) +
                            " instance(s)");
                      },
                      [self, retry](caf::error& e) { retry(self->system().render(e)); });
            },
            [self, retry](caf::error& e) { retry(self->system().render(e)); });
  }};
}

} // namespace

caf::actor watch_node(caf::actor_system& sys, const proxy_actor& proxy, const std::string& host,
                      std::uint16_t port, const node_info& info, const std::string& key,
                      std::vector<std::string> models,
                      std::function<void(const std::string&)> log) {
  watch_state init;
  init.host = host;
  init.port = port;
  init.key = key;
  init.node = info.node;
  init.models = std::move(models);
  init.log = std::move(log);
  return sys.spawn(watcher, proxy, info, std::move(init));
}

} // namespace aeg::actors
