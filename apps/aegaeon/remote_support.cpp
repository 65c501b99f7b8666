#include "apps/aegaeon/remote_support.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <exception>

namespace aeg::apps {

using json = nlohmann::json;

result<std::vector<std::string>> list_models(server::http_client& c, bool keyed) {
  AEG_TRY_ASSIGN(auto r, c.request("GET", "/v1/models"));
  if (r.status == 401)
    return fail(errc::invalid_argument,
                keyed ? "the server refused the API key (from --api-key or AEGAEON_API_KEY)"
                      : "the server needs an API key: give --api-key (or set AEGAEON_API_KEY)");
  if (r.status != 200)
    return fail(errc::unavailable, fmt::format("GET /v1/models answered {}: {}", r.status, r.body));
  std::vector<std::string> names;
  try {
    const auto doc = json::parse(r.body); // named: a temporary would die before the loop
    for (const auto& m : doc.at("data"))
      names.push_back(m.at("id").get<std::string>());
  } catch (const std::exception& e) {
    return fail(errc::corrupt_data, std::string("GET /v1/models: unexpected answer: ") + e.what());
  }
  return names;
}

result<server::url_parts> parse_server_url(std::string text) {
  while (!text.empty() && text.back() == '/')
    text.pop_back();
  if (text.size() >= 3 && text.compare(text.size() - 3, 3, "/v1") == 0)
    text.erase(text.size() - 3);
  return server::parse_url(text);
}

std::string error_text(const std::string& body) {
  try {
    return json::parse(body).at("error").at("message").get<std::string>();
  } catch (const std::exception&) {
    return body;
  }
}

} // namespace aeg::apps
