#include "apps/server/tokenize.hpp"

#include "models/tokenizer/utf8.hpp"

#include <nlohmann/json.hpp>

namespace aeg::server {

namespace {

using json = nlohmann::json;

api_error bad(std::string message, std::string param = {}) {
  return api_error{.status = 400, .message = std::move(message), .param = std::move(param)};
}

tl::expected<json, api_error> parse_body(std::string_view body) {
  auto doc = json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return tl::unexpected(bad("the body is not a JSON object"));
  return doc;
}

// The model a body names, or the only one served.
tl::expected<const served_text*, api_error> model_of(const json& doc,
                                                     const std::map<std::string, served_text>& m) {
  if (!doc.contains("model") || doc["model"].is_null()) {
    if (m.size() == 1)
      return &m.begin()->second;
    std::string names;
    for (const auto& [name, text] : m)
      names += (names.empty() ? "" : ", ") + name;
    return tl::unexpected(bad("'model' is required: this server serves " + names, "model"));
  }
  if (!doc["model"].is_string())
    return tl::unexpected(bad("'model' must be a string", "model"));
  const auto name = doc["model"].get<std::string>();
  auto it = m.find(name);
  if (it == m.end())
    return tl::unexpected(api_error{.status = 404,
                                    .message = "the model '" + name + "' does not exist",
                                    .param = "model",
                                    .code = "model_not_found"});
  return &it->second;
}

// A boolean field, `fallback` when absent; an error when it is something else.
tl::expected<bool, api_error> flag(const json& doc, const char* key, bool fallback) {
  if (!doc.contains(key) || doc[key].is_null())
    return fallback;
  if (!doc[key].is_boolean())
    return tl::unexpected(bad(std::string("'") + key + "' must be true or false", key));
  return doc[key].get<bool>();
}

// A body's JSON and the model it names.
struct tokenizer_request {
  json doc;
  const served_text* model = nullptr;
};
tl::expected<tokenizer_request, api_error>
read_request(std::string_view body, const std::map<std::string, served_text>& models) {
  auto doc = parse_body(body);
  if (!doc)
    return tl::unexpected(doc.error());
  auto model = model_of(*doc, models);
  if (!model)
    return tl::unexpected(model.error());
  return tokenizer_request{std::move(*doc), *model};
}

} // namespace

tl::expected<std::string, api_error> tokenize(std::string_view body,
                                              const std::map<std::string, served_text>& models) {
  auto request = read_request(body, models);
  if (!request)
    return tl::unexpected(request.error());
  auto& [doc, model] = *request;
  const auto& text = model->text;
  auto special = flag(doc, "add_special_tokens", true);
  if (special && doc.contains("add_special"))
    special = flag(doc, "add_special", true);
  auto pieces = flag(doc, "with_pieces", false);
  if (!special || !pieces)
    return tl::unexpected(!special ? special.error() : pieces.error());
  std::vector<std::int32_t> ids;
  if (doc.contains("messages")) {
    auto turns = parse_messages(doc);
    if (!turns)
      return tl::unexpected(turns.error());
    ids = encode_chat(*model, *turns);
  } else {
    const char* key = doc.contains("prompt") ? "prompt" : "content";
    if (!doc.contains(key) || !doc[key].is_string())
      return tl::unexpected(bad("give the text as 'prompt' (or 'content') or a conversation as "
                                "'messages'",
                                "prompt"));
    const auto prompt = doc[key].get<std::string>();
    ids = *special ? text.encode_prompt(prompt) : text.tokens().encode(prompt, true);
  }
  json tokens = json::array();
  for (auto id : ids) {
    if (!*pieces) {
      tokens.push_back(id);
      continue;
    }
    // A piece that ends inside a character is given as its bytes, as llama.cpp gives it.
    const auto piece = text.tokens().piece(id, true);
    json bytes = json::array();
    for (unsigned char b : piece)
      bytes.push_back(b);
    tokens.push_back({{"id", id}, {"piece", models::utf8::is_valid(piece) ? json(piece) : bytes}});
  }
  return json{{"tokens", std::move(tokens)},
              {"count", ids.size()},
              {"max_model_len", model->context_length}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

tl::expected<std::string, api_error> detokenize(std::string_view body,
                                                const std::map<std::string, served_text>& models) {
  auto request = read_request(body, models);
  if (!request)
    return tl::unexpected(request.error());
  auto& [doc, model] = *request;
  const auto& tok = model->text.tokens();
  if (!doc.contains("tokens") || !doc["tokens"].is_array())
    return tl::unexpected(bad("'tokens' must be a list of token ids", "tokens"));
  std::vector<std::int32_t> ids;
  for (const auto& t : doc["tokens"]) {
    if (!t.is_number_integer() || t.get<std::int64_t>() < 0 ||
        t.get<std::int64_t>() >= static_cast<std::int64_t>(tok.num_tokens()))
      return tl::unexpected(bad("'tokens' holds " + t.dump() +
                                    ", not a token id of this model (0 to " +
                                    std::to_string(tok.num_tokens() - 1) + ")",
                                "tokens"));
    ids.push_back(t.get<std::int32_t>());
  }
  // Special tokens are written out, as vLLM's detokenize does by default.
  const auto text = tok.decode(ids, true);
  return json{{"prompt", text}, {"content", text}}.dump(-1, ' ', false,
                                                        json::error_handler_t::replace);
}

} // namespace aeg::server
