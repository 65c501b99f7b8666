#pragma once

// nlohmann/json for the readers of Hugging Face folders; included by their sources only.
#include "coro/error.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <string>

namespace aeg::models::hf {

/// The JSON document in `path`; errors name the file and, for bad JSON, where it breaks.
inline result<nlohmann::json> read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(errc::not_found, "cannot read '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    return fail(errc::corrupt_data, path + " is not valid JSON: " + e.what());
  }
}

} // namespace aeg::models::hf
