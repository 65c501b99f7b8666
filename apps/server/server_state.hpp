#pragma once

// The state the server's parts share on its io thread, and the answers they give in its terms
// (CORS headers, OpenAI-shaped errors, counted refusals).

#include "actors/pool.hpp"
#include "apps/server/completion_request.hpp"
#include "apps/server/http_connection.hpp"
#include "apps/server/metrics.hpp"
#include "apps/server/openai.hpp"
#include "apps/server/pool_bridge.hpp"
#include "apps/server/server.hpp"
#include "apps/server/status.hpp"

#include <asio/io_context.hpp>
#include <caf/weak_intrusive_ptr.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace aeg::server {

struct server_state {
  explicit server_state(serve_options o) : opts(std::move(o)) {}

  serve_options opts;
  caf::actor_system* sys = nullptr;
  std::unique_ptr<actors::pool> pool;
  std::map<std::string, served_text> models;
  std::vector<std::string> model_names; ///< in the topology's order
  std::int64_t created = 0;             ///< Unix seconds, for /v1/models

  asio::io_context io{1};
  std::shared_ptr<io_link> link = std::make_shared<io_link>(io);
  metrics_registry metrics;
  status_page status; ///< `GET /status`, with the samples its rates are measured from
  std::chrono::steady_clock::time_point started_at = std::chrono::steady_clock::now();
  std::size_t in_flight = 0;                              ///< generations being answered
  std::map<std::string, std::size_t> in_flight_by_client; ///< by client address
  bool shutting_down = false;
  std::vector<caf::weak_actor_ptr> bridges; ///< pruned as they end
  /// Called when a generation ends or a connection closes: a shutdown may be complete.
  std::function<void()> maybe_finish_shutdown;

  void log(const std::string& line) const {
    if (opts.log)
      opts.log(line);
  }

  /// Which web origin may read the answer (when the server was told one).
  void add_cors(header_list& h) const;
  /// A whole answer, with CORS headers.
  void respond(http_connection& c, int status, std::string_view body, header_list extra = {},
               std::string_view content_type = "application/json") const;
  /// An error in OpenAI's shape, counted in /metrics.
  void respond_error(http_connection& c, const api_error& e);
  /// 404 for a model this server does not have, listing those it has.
  api_error unknown_model(const std::string& name) const;
};

} // namespace aeg::server
