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

// A chat message's content: a string, or OpenAI's list of text parts.
tl::expected<std::string, api_error> content_of(const json& m, std::size_t i) {
  const auto param = "messages[" + std::to_string(i) + "].content";
  const auto& c = m.contains("content") ? m["content"] : json();
  if (c.is_string())
    return c.get<std::string>();
  if (!c.is_array())
    return tl::unexpected(bad("'" + param + "' must be a string or a list of text parts", param));
  std::string text;
  for (const auto& part : c) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
        !part["text"].is_string())
      return tl::unexpected(bad("'" + param + "' may hold only text parts", param));
    text += part["text"].get<std::string>();
  }
  return text;
}

} // namespace

tl::expected<std::string, api_error> tokenize(std::string_view body,
                                              const std::map<std::string, served_text>& models) {
  auto doc = parse_body(body);
  if (!doc)
    return tl::unexpected(doc.error());
  auto model = model_of(*doc, models);
  if (!model)
    return tl::unexpected(model.error());
  const auto& text = (*model)->text;
  auto special = flag(*doc, "add_special_tokens", true);
  if (special && doc->contains("add_special"))
    special = flag(*doc, "add_special", true);
  auto pieces = flag(*doc, "with_pieces", false);
  if (!special || !pieces)
    return tl::unexpected(!special ? special.error() : pieces.error());
  std::vector<std::int32_t> ids;
  if (doc->contains("messages")) {
    const auto& list = (*doc)["messages"];
    if (!list.is_array() || list.empty())
      return tl::unexpected(bad("'messages' must be a non-empty list", "messages"));
    std::vector<models::chat_message> messages;
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (!list[i].is_object() || !list[i].contains("role") || !list[i]["role"].is_string())
        return tl::unexpected(
            bad("'messages[" + std::to_string(i) + "]' needs a string 'role'", "messages"));
      auto content = content_of(list[i], i);
      if (!content)
        return tl::unexpected(content.error());
      messages.push_back({list[i]["role"].get<std::string>(), std::move(*content)});
    }
    ids = text.encode_chat(messages);
  } else {
    const char* key = doc->contains("prompt") ? "prompt" : "content";
    if (!doc->contains(key) || !(*doc)[key].is_string())
      return tl::unexpected(bad("give the text as 'prompt' (or 'content') or a conversation as "
                                "'messages'",
                                "prompt"));
    const auto prompt = (*doc)[key].get<std::string>();
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
              {"max_model_len", (*model)->context_length}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

tl::expected<std::string, api_error> detokenize(std::string_view body,
                                                const std::map<std::string, served_text>& models) {
  auto doc = parse_body(body);
  if (!doc)
    return tl::unexpected(doc.error());
  auto model = model_of(*doc, models);
  if (!model)
    return tl::unexpected(model.error());
  const auto& tok = (*model)->text.tokens();
  if (!doc->contains("tokens") || !(*doc)["tokens"].is_array())
    return tl::unexpected(bad("'tokens' must be a list of token ids", "tokens"));
  std::vector<std::int32_t> ids;
  for (const auto& t : (*doc)["tokens"]) {
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
