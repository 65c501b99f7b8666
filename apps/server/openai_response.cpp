#include "apps/server/openai.hpp"

#include <nlohmann/json.hpp>

#include <cmath>

// The JSON of OpenAI's answers: whole, streamed in chunks, their usage and log-probabilities.

namespace aeg::server {

using json = nlohmann::json;

namespace {

json usage_json(const usage_counts& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json finish_json(std::optional<std::string_view> r) {
  return r ? json(std::string(*r)) : json(nullptr);
}

// JSON has no infinity: a token the sampling rule could not pick shows OpenAI's floor.
double shown(float logprob) {
  return std::isfinite(logprob) ? static_cast<double>(logprob) : -9999.0;
}

json bytes_of(const std::string& s) {
  json out = json::array();
  for (unsigned char b : s)
    out.push_back(b);
  return out;
}

// A chat's {"content": [{token, logprob, bytes, top_logprobs}...]}.
json chat_logprobs(const std::vector<logprob_entry>& entries) {
  json content = json::array();
  for (const auto& e : entries) {
    json top = json::array();
    for (const auto& [token, lp] : e.top)
      top.push_back({{"token", token}, {"logprob", shown(lp)}, {"bytes", bytes_of(token)}});
    content.push_back({{"token", e.token},
                       {"logprob", shown(e.logprob)},
                       {"bytes", bytes_of(e.token)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

// A completion's {"tokens", "token_logprobs", "top_logprobs", "text_offset"}; each top entry
// holds the token picked as well, as vLLM's does.
json completion_logprobs(const std::vector<logprob_entry>& entries) {
  json tokens = json::array(), logprobs = json::array(), tops = json::array(),
       offsets = json::array();
  for (const auto& e : entries) {
    tokens.push_back(e.token);
    logprobs.push_back(shown(e.logprob));
    json top = json::object();
    for (const auto& [token, lp] : e.top)
      top[token] = shown(lp);
    top[e.token] = shown(e.logprob);
    tops.push_back(top);
    offsets.push_back(e.text_offset);
  }
  return {{"tokens", tokens},
          {"token_logprobs", logprobs},
          {"top_logprobs", tops},
          {"text_offset", offsets}};
}

json logprobs_json(bool chat, const std::vector<logprob_entry>* entries) {
  if (entries == nullptr)
    return nullptr;
  return chat ? chat_logprobs(*entries) : completion_logprobs(*entries);
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

// A byte that is not a character's first counts with that character.
std::size_t text_characters(std::string_view text) {
  std::size_t n = 0;
  for (unsigned char c : text)
    n += (c & 0xC0) != 0x80;
  return n;
}

std::string response_shape::full(const std::vector<choice_text>& choices,
                                 const usage_counts& usage) const {
  json list = json::array();
  for (std::size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    json choice = {{"index", i},
                   {"finish_reason", c.finish_reason},
                   {"logprobs", logprobs_json(chat, c.logprobs ? &*c.logprobs : nullptr)}};
    if (chat)
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else
      choice["text"] = c.text;
    list.push_back(std::move(choice));
  }
  return dump({{"id", id},
               {"object", chat ? "chat.completion" : "text_completion"},
               {"created", created},
               {"model", model},
               {"choices", list},
               {"usage", usage_json(usage)}});
}

std::string response_shape::chunk(std::size_t index, std::string_view text,
                                  std::optional<std::string_view> finish_reason, bool first,
                                  bool include_usage,
                                  const std::vector<logprob_entry>* logprobs) const {
  json choice = {{"index", index},
                 {"finish_reason", finish_json(finish_reason)},
                 {"logprobs", logprobs_json(chat, logprobs)}};
  if (chat) {
    json delta = json::object();
    if (first)
      delta["role"] = "assistant";
    if (!text.empty() || !finish_reason)
      delta["content"] = std::string(text);
    choice["delta"] = delta;
  } else {
    choice["text"] = std::string(text);
  }
  json out = {{"id", id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", created},
              {"model", model},
              {"choices", json::array({choice})}};
  if (include_usage)
    out["usage"] = nullptr;
  return dump(out);
}

std::string response_shape::usage_chunk(const usage_counts& usage) const {
  return dump({{"id", id},
               {"object", chat ? "chat.completion.chunk" : "text_completion"},
               {"created", created},
               {"model", model},
               {"choices", json::array()},
               {"usage", usage_json(usage)}});
}

} // namespace aeg::server
