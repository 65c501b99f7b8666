#pragma once

// What `chat --url` and `bench --url` share: reaching a server and reading its answers.

#include "apps/server/client.hpp"
#include "coro/error.hpp"

#include <string>
#include <vector>

namespace aeg::apps {

/// The models a server lists, or an error line: errc::invalid_argument for an API key missing or
/// refused (the command's to fix), other codes for a server that is not there or not well.
result<std::vector<std::string>> list_models(server::http_client& c, bool keyed);

/// A server's URL; an OpenAI-style base URL too: "http://host:port/v1" names the same server, and
/// the client adds "/v1/..." itself.
result<server::url_parts> parse_server_url(std::string text);

/// The message of an OpenAI error body, else the body itself.
std::string error_text(const std::string& body);

} // namespace aeg::apps
