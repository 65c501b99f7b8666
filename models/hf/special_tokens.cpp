#include "models/hf/json_file.hpp"
#include "models/hf/tokenizer_parts.hpp"

#include <filesystem>

namespace aeg::models::hf {

namespace {

using json = nlohmann::json;
using gguf::value;

// A special token's text as tokenizer_config.json gives it (a string or an AddedToken object).
std::optional<std::string> token_text(const json& cfg, const char* key) {
  if (!cfg.contains(key))
    return std::nullopt;
  const auto& v = cfg[key];
  if (v.is_string())
    return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

// The chat template: chat_template.jinja, else tokenizer_config.json's (its "default" one when
// it holds several).
std::optional<std::string> chat_template(const std::string& dir, const json& cfg) {
  std::ifstream in(dir + "/chat_template.jinja", std::ios::binary);
  if (in) {
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  if (!cfg.contains("chat_template"))
    return std::nullopt;
  const auto& t = cfg["chat_template"];
  if (t.is_string())
    return t.get<std::string>();
  if (t.is_array())
    for (const auto& named : t)
      if (named.value("name", std::string{}) == "default")
        return named.value("template", std::string{});
  return std::nullopt;
}

} // namespace

result<void> append_special_tokens(const std::string& dir, const vocabulary& vocab,
                                   const special_defaults& defaults, metadata& out) {
  namespace fs = std::filesystem;
  // tokenizer_config.json names the special tokens, generation_config.json adds stop ids.
  json cfg = json::object(), gen = json::object();
  if (fs::exists(dir + "/tokenizer_config.json")) {
    AEG_TRY_ASSIGN(cfg, read_json(dir + "/tokenizer_config.json"));
  }
  if (fs::exists(dir + "/generation_config.json")) {
    AEG_TRY_ASSIGN(gen, read_json(dir + "/generation_config.json"));
  }
  auto id_key = [&](const char* key, std::optional<std::int32_t> id) {
    if (id)
      out.emplace_back(key, value::of_uint32(static_cast<std::uint32_t>(*id)));
  };
  auto bos = vocab.id(token_text(cfg, "bos_token"));
  if (!bos)
    bos = defaults.bos;
  auto eos = vocab.id(token_text(cfg, "eos_token"));
  if (!eos)
    eos = defaults.eos;
  std::vector<std::int32_t> stops;
  if (gen.contains("eos_token_id")) {
    const auto& e = gen["eos_token_id"];
    for (const auto& x : e.is_array() ? e : json::array({e}))
      if (x.is_number_integer() && x.get<std::int64_t>() >= 0 &&
          x.get<std::size_t>() < vocab.tokens.size())
        stops.push_back(x.get<std::int32_t>());
  }
  if (!eos && !stops.empty())
    eos = stops.front();
  std::erase(stops, eos.value_or(-1));
  id_key("tokenizer.ggml.bos_token_id", bos);
  id_key("tokenizer.ggml.eos_token_id", eos);
  id_key("tokenizer.ggml.unknown_token_id", defaults.unknown);
  auto pad = vocab.id(token_text(cfg, "pad_token"));
  id_key("tokenizer.ggml.padding_token_id", pad ? pad : defaults.padding);
  if (!stops.empty())
    id_key("tokenizer.ggml.eot_token_id", stops[0]);
  if (stops.size() > 1)
    id_key("tokenizer.ggml.eom_token_id", stops[1]);
  const bool add_bos = cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()
                           ? cfg["add_bos_token"].get<bool>()
                           : defaults.add_bos || (defaults.leading && defaults.leading == bos);
  out.emplace_back("tokenizer.ggml.add_bos_token", value::of_bool(add_bos && bos.has_value()));
  if (auto t = chat_template(dir, cfg))
    out.emplace_back("tokenizer.chat_template", value::of_string(*t));
  return {};
}

} // namespace aeg::models::hf
