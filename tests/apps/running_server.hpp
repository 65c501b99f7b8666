#pragma once

// For tests that talk to a real server over loopback TCP: one running in this process, and a
// reader of its /metrics.

#include "actors/runtime_config.hpp"
#include "apps/server/client.hpp"
#include "apps/server/server.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

namespace aeg::server {

/// A server running on its own thread, in this process, on a free loopback port.
class running_server {
public:
  /// Starts it; `error()` says why when it could not.
  explicit running_server(serve_options o) {
    actors::configure_runtime(cfg_);                  // as our processes run CAF
    sys_ = std::make_unique<caf::actor_system>(cfg_); // it keeps a reference to its config
    o.port = 0;
    o.handle_signals = false;
    auto s = server::create(*sys_, std::move(o));
    if (!s) {
      error_ = s.error().to_string();
      return;
    }
    server_ = std::move(*s);
    port_ = server_->port();
    thread_ = std::thread([this] { rc_ = server_->run(); });
  }
  ~running_server() {
    stop();
    server_.reset();
  }
  running_server(const running_server&) = delete;
  running_server& operator=(const running_server&) = delete;

  /// Shuts it down gracefully and waits; its exit code.
  int stop() {
    if (thread_.joinable()) {
      server_->stop();
      thread_.join();
    }
    return rc_;
  }
  const std::string& error() const { return error_; }
  std::uint16_t port() const { return port_; }
  url_parts url() const { return {"127.0.0.1", std::to_string(port_), ""}; }

private:
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<server> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
  int rc_ = -1;
  std::string error_;
};

/// The sum of a metric's samples in a /metrics text (0 when absent). `name` may carry labels:
/// `aegaeon_requests_total{model="m",finish_reason="stop"}`.
inline double metric(const std::string& text, const std::string& name) {
  double sum = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name, 0) == 0 && (line[name.size()] == ' ' || line[name.size()] == '{'))
      sum += std::stod(line.substr(line.rfind(' ') + 1));
  return sum;
}

} // namespace aeg::server
