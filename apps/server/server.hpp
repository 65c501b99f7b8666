#pragma once

#include "apps/server/http.hpp"
#include "coro/error.hpp"

#include <caf/fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace aeg::server {

/// How `aegaeon serve` runs.
struct serve_options {
  std::string config;                ///< a topology file; empty: every GGUF in `models_dir`
  std::string models_dir = "models"; ///< searched when there is no config
  std::string backend;               ///< no config: "cpu" or "cuda"; empty: cuda when a GPU is seen
  std::size_t memory_mib = 0;        ///< no config: device memory to use; 0: the backend's default
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;     ///< 0: any free port (see `server::port`)
  std::string api_key;           ///< when set, /v1/* needs "Authorization: Bearer KEY"
  bool metrics_need_key = false; ///< /metrics needs the API key too
  /// Host names (no port) the server answers to besides its own address; "*": any. A server on
  /// a loopback address otherwise answers only to loopback names (a web page cannot reach it by
  /// DNS rebinding), one on a wildcard address (0.0.0.0, ::) to any, one on another address to
  /// that address.
  std::vector<std::string> allowed_hosts;
  /// When set, web pages from this origin ("*": any) may call the API: CORS headers on every
  /// answer and on OPTIONS preflights. Empty: none (browsers refuse cross-origin calls).
  std::string cors_origin;
  double grace_seconds = 10;          ///< on shutdown, how long in-flight requests may finish
  double header_timeout_seconds = 10; ///< a request's line, headers and body must arrive by then
  double idle_timeout_seconds = 60;   ///< a keep-alive connection with no request is closed
  double write_timeout_seconds = 60;  ///< a client that reads nothing for this long is dropped
  std::size_t max_connections = 512;  ///< beyond: 503 and close
  std::size_t max_in_flight = 256;    ///< generations at once; beyond: 429 with Retry-After
  /// Generations at once from one client address; beyond: 429 with Retry-After (0: no cap).
  std::size_t max_client_requests = 0;
  /// The longest prompt a request may bring, in tokens, for every model (0: the context; a
  /// model's `max_prompt_tokens` in the topology caps it further); beyond: 400.
  std::size_t max_prompt_tokens = 0;
  /// No config: the chat format of every model ("chatml", "llama3", "llama2"); empty: each
  /// model's own (a topology names it per model).
  std::string chat_template;
  request_limits limits;      ///< header and body sizes
  bool handle_signals = true; ///< SIGINT and SIGTERM start a graceful shutdown
  /// Model loading progress (a model, bytes done, bytes in all); none: quiet.
  std::function<void(const std::string&, std::size_t, std::size_t)> progress;
  std::function<void(const std::string&)> log; ///< one line per event worth telling; none: quiet
};

/// The OpenAI-compatible HTTP server in front of a pool: see docs/server.md. Its network side is
/// one Asio thread; the pool's actors run on CAF's scheduler; they meet through messages and
/// posted handlers, and nothing blocks either side.
class server {
public:
  /// Loads the models (the topology's, or every GGUF of `models_dir`), starts the pool in `sys`
  /// and binds the listening socket. Errors say what to fix.
  static result<std::unique_ptr<server>> create(caf::actor_system& sys, serve_options options);
  /// What `create` would refuse before it loads anything (a topology that does not read, no
  /// models, device memory that cannot hold them), checked without starting anything.
  static result<void> check(const serve_options& options);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// The port it listens on (the one chosen when options.port was 0).
  std::uint16_t port() const noexcept;
  /// Serves on the calling thread until a shutdown completes; returns 0 after a clean one.
  int run();
  /// Starts a graceful shutdown (any thread): stop accepting, let in-flight requests finish
  /// within the grace period, cancel the rest, close every connection; then `run` returns.
  void stop();

  struct impl; ///< opaque: the server's state, shared with its connections

private:
  server();
  std::shared_ptr<impl> impl_;
};

} // namespace aeg::server
