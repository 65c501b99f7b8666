#include "apps/server/server_state.hpp"

#include <fmt/core.h>

namespace aeg::server {

void server_state::add_cors(header_list& h) const {
  const auto& origin = opts.cors_origin;
  if (origin.empty())
    return;
  h.emplace_back("Access-Control-Allow-Origin", origin);
  if (origin != "*")
    h.emplace_back("Vary", "Origin");
}

void server_state::respond(http_connection& c, int status, std::string_view body, header_list extra,
                           std::string_view content_type) const {
  add_cors(extra);
  c.respond(status, std::move(extra), body, content_type);
}

void server_state::respond_error(http_connection& c, const api_error& e) {
  metrics.refused(e.status);
  header_list h;
  if (e.retry_after > 0)
    h.emplace_back("Retry-After", std::to_string(e.retry_after));
  if (e.status == 401)
    h.emplace_back("WWW-Authenticate", "Bearer");
  if (!e.allow.empty())
    h.emplace_back("Allow", e.allow);
  respond(c, e.status, e.json(), std::move(h));
}

api_error server_state::unknown_model(const std::string& name) const {
  std::string list;
  for (const auto& n : model_names)
    list += (list.empty() ? "" : ", ") + n;
  return api_error{
      .status = 404,
      .message = fmt::format("the model '{}' does not exist; this server has: {}", name, list),
      .param = "model",
      .code = "model_not_found"};
}

} // namespace aeg::server
