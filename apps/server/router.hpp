#pragma once

#include "apps/server/http_connection.hpp"
#include "apps/server/server_state.hpp"

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace aeg::server {

/// The route table: which path answers which methods, and with what. It also keeps the rules
/// every route shares: OPTIONS (with CORS preflights), the API key on /v1/*, 405 with the
/// methods a path answers, 404 for the rest, and OpenAI-shaped errors for requests that could
/// not be read. io thread only.
class router {
public:
  explicit router(server_state& st);

  /// Answers a whole request.
  void handle(http_connection& c, const http_request& req);
  /// Answers a request that could not be read (the connection closes after it).
  void refused(http_connection& c, int status, std::string why);

private:
  using endpoint = void (router::*)(http_connection&, const http_request&);
  struct route {
    std::string path; ///< exact, or a prefix when it ends in '/'
    const char* method;
    endpoint answer;
    bool matches(const std::string& p) const;
  };

  bool authorized(const http_request& req) const;
  std::optional<api_error> host_refusal(const http_request& req) const;
  void health(http_connection& c, const http_request& req);
  void list_models(http_connection& c, const http_request& req);
  void one_model(http_connection& c, const http_request& req);
  void metrics(http_connection& c, const http_request& req);
  void status(http_connection& c, const http_request& req);
  void dashboard(http_connection& c, const http_request& req);
  void completions(http_connection& c, const http_request& req);
  void chat_completions(http_connection& c, const http_request& req);
  void tokenize(http_connection& c, const http_request& req);
  void detokenize(http_connection& c, const http_request& req);

  server_state& st_;
  std::vector<route> routes_;
  std::set<std::string> hosts_; ///< Host names answered to (lower case, no port)
  bool any_host_ = false;
};

} // namespace aeg::server
