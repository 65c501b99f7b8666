#include "apps/server/router.hpp"

#include "apps/server/completion_session.hpp"
#include "apps/server/dashboard.hpp"
#include "apps/server/pool_bridge.hpp"
#include "apps/server/tokenize.hpp"

#include <asio/ip/address.hpp>
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

std::string lower(std::string_view v) {
  std::string out(v);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// A host name as compared: lower case, without a port, brackets or a final dot.
std::string host_name(std::string_view h) {
  if (h.starts_with('[')) { // an IPv6 literal, maybe with a port
    const auto close = h.find(']');
    h = close == std::string_view::npos ? h.substr(1) : h.substr(1, close - 1);
  } else if (h.find(':') == h.rfind(':')) { // a name or IPv4 address, maybe with a port
    h = h.substr(0, h.find(':'));
  }
  if (h.ends_with('.'))
    h.remove_suffix(1);
  return lower(h);
}

bool loopback(const std::string& host) {
  asio::error_code ec;
  const auto a = asio::ip::make_address(host, ec);
  return host == "localhost" || (!ec && a.is_loopback());
}

bool wildcard(const std::string& host) {
  asio::error_code ec;
  const auto a = asio::ip::make_address(host, ec);
  return !ec && a.is_unspecified();
}

// Compares keys without stopping at the first difference, so that the time taken says nothing
// of how much of a guess was right.
bool same_key(std::string_view a, std::string_view b) {
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  const std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i)
    diff |= static_cast<unsigned char>(i < a.size() ? a[i] : 0) ^
            static_cast<unsigned char>(i < b.size() ? b[i] : 0);
  return diff == 0;
}

// Whether a Content-Type names JSON ("application/json", any case, parameters allowed).
bool is_json(const std::string* content_type) {
  if (content_type == nullptr)
    return false;
  std::string_view v(*content_type);
  v = v.substr(0, v.find(';'));
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
    v.remove_suffix(1);
  return lower(v) == "application/json";
}

// A page the server is gathering from its actors.
class page final : public pending_answer {
public:
  void abandon() override { gone = true; }
  bool gone = false;
};

} // namespace

router::router(server_state& st) : st_(st) {
  const std::string bound = host_name(st_.opts.host);
  hosts_.insert(bound);
  for (const auto& h : st_.opts.allowed_hosts) {
    any_host_ |= h == "*";
    hosts_.insert(host_name(h));
  }
  if (loopback(bound))
    hosts_.insert({"localhost", "127.0.0.1", "::1"});
  any_host_ |= wildcard(bound) && st_.opts.allowed_hosts.empty();
  routes_ = {
      {"/health", "GET", &router::health},
      {"/v1/models", "GET", &router::list_models},
      {"/v1/models/", "GET", &router::one_model},
      {"/metrics", "GET", &router::metrics},
      {"/status", "GET", &router::status},
      {"/dashboard", "GET", &router::dashboard},
      {"/v1/completions", "POST", &router::completions},
      {"/v1/chat/completions", "POST", &router::chat_completions},
      {"/tokenize", "POST", &router::tokenize},
      {"/detokenize", "POST", &router::detokenize},
  };
}

bool router::route::matches(const std::string& p) const {
  return path.back() == '/' ? p.size() > path.size() && p.rfind(path, 0) == 0 : p == path;
}

void router::handle(http_connection& c, const http_request& req) {
  if (auto no = host_refusal(req))
    return st_.respond_error(c, *no);
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
  // The API says nothing, not even which paths exist, to a client without the key. The
  // dashboard's page holds no figures: it asks /status for them, with the key.
  const bool keyed =
      req.path.rfind("/v1/", 0) == 0 || req.path == "/tokenize" || req.path == "/detokenize" ||
      ((req.path == "/metrics" || req.path == "/status") && st_.opts.metrics_need_key);
  if (keyed && !st_.opts.api_key.empty() && !authorized(req))
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
  // A browser sends a page's cross-site form posts without asking first (no preflight) only with
  // a few content types, none of them JSON: refusing anything but JSON closes that door.
  if (req.method == "POST" && !is_json(req.header("content-type")))
    return st_.respond_error(
        c, api_error{.status = 415,
                     .message = "the body must be JSON: send 'Content-Type: application/json'",
                     .code = "unsupported_media_type"});
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
  return same_key(v, st_.opts.api_key);
}

// A Host this server does not answer to: a page may be reaching a loopback server through a
// name it made point there (DNS rebinding). Requests without Host (HTTP/1.0) come from no
// browser.
std::optional<api_error> router::host_refusal(const http_request& req) const {
  const auto* host = req.header("host");
  if (any_host_ || host == nullptr || hosts_.count(host_name(*host)) != 0)
    return std::nullopt;
  std::string names;
  for (const auto& h : hosts_)
    names += (names.empty() ? "" : ", ") + h;
  return api_error{.status = 403,
                   .message = fmt::format("this server does not answer to Host '{}' (it answers "
                                          "to {}); --allowed-hosts adds names",
                                          *host, names),
                   .code = "host_not_allowed"};
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

// The live view as JSON, gathered as /metrics is.
void router::status(http_connection& c, const http_request&) {
  auto waiting = std::make_shared<page>();
  c.await_answer(waiting);
  gather_metrics(
      *st_.sys, *st_.pool, st_.link,
      [this, waiting, conn = c.shared_from_this()](actors::pool_metrics pool,
                                                   std::vector<instance_report> instances) {
        if (waiting->gone)
          return;
        const auto now = std::chrono::steady_clock::now();
        const status_inputs in{.uptime_seconds =
                                   std::chrono::duration<double>(now - st_.started_at).count(),
                               .shutting_down = st_.shutting_down,
                               .remote = st_.pool->remote(),
                               .model_names = st_.model_names,
                               .counts = st_.metrics.counts()};
        st_.respond(*conn, 200, st_.status.render(in, pool, instances, now),
                    {{"Cache-Control", "no-store"}});
      });
}

void router::dashboard(http_connection& c, const http_request&) {
  st_.respond(c, 200, dashboard_html(),
              {{"Content-Security-Policy", std::string(dashboard_csp)},
               {"Cache-Control", "no-store"},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"}},
              "text/html; charset=utf-8");
}

void router::completions(http_connection& c, const http_request& req) {
  completion_session::start(st_, c, req, false);
}

void router::chat_completions(http_connection& c, const http_request& req) {
  completion_session::start(st_, c, req, true);
}

void router::tokenize(http_connection& c, const http_request& req) {
  auto answer = aeg::server::tokenize(req.body, st_.models);
  if (!answer)
    return st_.respond_error(c, answer.error());
  st_.respond(c, 200, *answer);
}

void router::detokenize(http_connection& c, const http_request& req) {
  auto answer = aeg::server::detokenize(req.body, st_.models);
  if (!answer)
    return st_.respond_error(c, answer.error());
  st_.respond(c, 200, *answer);
}

} // namespace aeg::server
