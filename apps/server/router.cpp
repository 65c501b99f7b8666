#include "apps/server/router.hpp"

#include "apps/server/completion_session.hpp"
#include "apps/server/pool_bridge.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

namespace aeg::server {

namespace {

std::string quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The answer to OPTIONS and the Allow header of a 405: GET answers HEAD too.
const char* allowed(const char* method) {
  return std::string_view(method) == "POST" ? "POST, OPTIONS" : "GET, HEAD, OPTIONS";
}

// A page the server is gathering from its actors.
class page final : public pending_answer {
public:
  void abandon() override { gone = true; }
  bool gone = false;
};

} // namespace

router::router(server_state& st) : st_(st) {
  routes_ = {
      {"/health", "GET", &router::health},
      {"/v1/models", "GET", &router::list_models},
      {"/v1/models/", "GET", &router::one_model},
      {"/metrics", "GET", &router::metrics},
      {"/v1/completions", "POST", &router::completions},
      {"/v1/chat/completions", "POST", &router::chat_completions},
  };
}

bool router::route::matches(const std::string& p) const {
  return path.back() == '/' ? p.size() > path.size() && p.rfind(path, 0) == 0 : p == path;
}

void router::handle(http_connection& c, const http_request& req) {
  const auto r = std::find_if(routes_.begin(), routes_.end(),
                              [&](const route& x) { return x.matches(req.path); });
  const char* allow = r != routes_.end() ? allowed(r->method) : nullptr;
  if (allow != nullptr && req.method == "OPTIONS") {
    header_list h = {{"Allow", allow}};
    if (!st_.opts.cors_origin.empty()) { // a browser's preflight: what it may send
      h.emplace_back("Access-Control-Allow-Methods", allow);
      h.emplace_back("Access-Control-Allow-Headers", "Authorization, Content-Type");
      h.emplace_back("Access-Control-Max-Age", "600");
    }
    return st_.respond(c, 204, "", std::move(h));
  }
  // The API says nothing, not even which paths exist, to a client without the key.
  if (req.path.rfind("/v1/", 0) == 0 && !st_.opts.api_key.empty() && !authorized(req))
    return st_.respond_error(
        c, api_error{.status = 401,
                     .message = req.header("authorization") == nullptr
                                    ? "missing API key: send 'Authorization: Bearer KEY'"
                                    : "incorrect API key",
                     .type = "invalid_request_error", // as OpenAI's API says it
                     .code = "invalid_api_key"});
  if (allow == nullptr)
    return st_.respond_error(
        c, api_error{.status = 404,
                     .message = fmt::format("no route for {} {}", req.method, req.path),
                     .code = "not_found"});
  if (req.method != r->method && !(req.method == "HEAD" && std::string_view(r->method) == "GET"))
    return st_.respond_error(c, api_error{.status = 405,
                                          .message = fmt::format("{} {} is not allowed; use {}",
                                                                 req.method, req.path, r->method),
                                          .allow = allow});
  (this->*(r->answer))(c, req);
}

void router::refused(http_connection& c, int status, std::string why) {
  st_.respond_error(c, api_error{.status = status, .message = std::move(why)});
}

// Whether the request carries "Authorization: Bearer KEY" with this server's key (the scheme in
// any case).
bool router::authorized(const http_request& req) const {
  const auto* auth = req.header("authorization");
  if (auth == nullptr)
    return false;
  std::string_view v(*auth);
  const auto space = v.find(' ');
  if (space != 6 || !std::equal(v.begin(), v.begin() + 6, "bearer", [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == b;
      }))
    return false;
  v.remove_prefix(std::min(v.find_first_not_of(' ', space), v.size()));
  return v == st_.opts.api_key;
}

void router::health(http_connection& c, const http_request&) {
  st_.respond(c, 200,
              fmt::format(R"({{"status":"{}","models":{}}})",
                          st_.shutting_down ? "shutting_down" : "ok", st_.model_names.size()));
}

void router::list_models(http_connection& c, const http_request&) {
  st_.respond(c, 200, models_list(st_.model_names, st_.created));
}

void router::one_model(http_connection& c, const http_request& req) {
  const auto name = req.path.substr(std::string_view("/v1/models/").size());
  if (st_.models.count(name) == 0)
    return st_.respond_error(c, st_.unknown_model(name));
  st_.respond(c, 200,
              fmt::format(R"({{"id":{},"object":"model","created":{},"owned_by":"aegaeon"}})",
                          quoted(name), st_.created));
}

// The pool's and every instance's figures, asked of the actors without blocking anyone; the
// answer goes out when all have replied.
void router::metrics(http_connection& c, const http_request&) {
  auto waiting = std::make_shared<page>();
  c.await_answer(waiting);
  gather_metrics(*st_.sys, *st_.pool, st_.link,
                 [this, waiting, conn = c.shared_from_this()](
                     actors::pool_metrics pool, std::vector<instance_report> instances) {
                   if (!waiting->gone)
                     st_.respond(*conn, 200, st_.metrics.render(pool, instances), {},
                                 "text/plain; version=0.0.4; charset=utf-8");
                 });
}

void router::completions(http_connection& c, const http_request& req) {
  completion_session::start(st_, c, req, false);
}

void router::chat_completions(http_connection& c, const http_request& req) {
  completion_session::start(st_, c, req, true);
}

} // namespace aeg::server
