#include "apps/server/openai.hpp"

#include "coro/error.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <limits>

namespace aeg::server {

using json = nlohmann::json;

std::string api_error::json() const {
  nlohmann::json e = {{"message", message},
                      {"type", type},
                      {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
                      {"code", code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code)}};
  // Messages may quote what the client sent, which need not be valid UTF-8.
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

tl::unexpected<api_error> bad(std::string param, std::string message) {
  return tl::unexpected(api_error{.status = 400,
                                  .message = std::move(message),
                                  .type = "invalid_request_error",
                                  .param = std::move(param)});
}

// A bound as people write it: 1 and 1000000000, not 1.0 and 1000000000.0.
std::string show(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

// A number field: absent or null leaves `out` alone.
template <class T>
tl::expected<bool, api_error> number(const json& j, const char* name, T& out, double lo,
                                     double hi) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null())
    return false;
  if (!it->is_number())
    return bad(name, std::string("'") + name + "' must be a number");
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi)
    return bad(name, std::string("'") + name + "' must be between " + show(lo) + " and " +
                         show(hi) + "; it is " + it->dump());
  if constexpr (std::is_integral_v<T>) {
    if (v != std::floor(v))
      return bad(name, std::string("'") + name + "' must be an integer");
  }
  out = static_cast<T>(v);
  return true;
}

tl::expected<std::string, api_error> message_content(const json& c, std::size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "].content";
  if (c.is_string())
    return c.get<std::string>();
  if (c.is_null())
    return bad(where, where + " is required (a string or an array of text parts)");
  if (!c.is_array())
    return bad(where, where + " must be a string or an array of text parts");
  std::string text;
  for (std::size_t k = 0; k < c.size(); ++k) {
    const auto& part = c[k];
    const std::string at = where + "[" + std::to_string(k) + "]";
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      return bad(where, at + " must be a text part: an object with a string 'type'");
    if (part["type"] != "text")
      return bad(where, at + " is of type '" + part["type"].get<std::string>() +
                            "'; only parts of type 'text' are supported");
    if (!part.contains("text") || !part["text"].is_string())
      return bad(where, at + " is of type 'text' and needs a string 'text'");
    text += part["text"].get<std::string>();
  }
  return text;
}

// A chat's messages into `p`.
tl::expected<void, api_error> parse_chat(const json& j, completion_params& p) {
  AEG_TRY_ASSIGN(p.messages, parse_messages(j));
  return {};
}

// A completion's prompt: text, or token ids.
tl::expected<void, api_error> parse_prompt(const json& j, completion_params& p) {
  if (!j.contains("prompt"))
    return bad("prompt", "'prompt' is required");
  const auto& pr = j["prompt"];
  auto ids = [&](const json& arr) -> tl::expected<std::vector<std::int32_t>, api_error> {
    std::vector<std::int32_t> out;
    for (const auto& t : arr) {
      if (!t.is_number_integer() || t.get<std::int64_t>() < 0 ||
          t.get<std::int64_t>() > std::numeric_limits<std::int32_t>::max())
        return bad("prompt", "a token-id prompt must hold non-negative integers");
      out.push_back(t.get<std::int32_t>());
    }
    return out;
  };
  if (pr.is_string()) {
    p.prompt = pr.get<std::string>();
  } else if (pr.is_array() && pr.size() == 1 && pr[0].is_string()) {
    p.prompt = pr[0].get<std::string>();
  } else if (pr.is_array() && !pr.empty() && pr[0].is_number()) {
    AEG_TRY_ASSIGN(auto t, ids(pr));
    p.prompt_tokens = std::move(t);
  } else if (pr.is_array() && pr.size() == 1 && pr[0].is_array() && !pr[0].empty()) {
    AEG_TRY_ASSIGN(auto t, ids(pr[0]));
    p.prompt_tokens = std::move(t);
  } else {
    return bad("prompt", "'prompt' must be a string or an array of token ids (one prompt per "
                         "request; ask for several answers with n)");
  }
  if (p.prompt.empty() && p.prompt_tokens.empty())
    return bad("prompt", "'prompt' must not be empty");
  return {};
}

// Sampling and length.
tl::expected<void, api_error> parse_sampling(const json& j, completion_params& p) {
  double max_tokens = -1;
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    AEG_TRY_ASSIGN(auto r, number(j, name, max_tokens, 1, 1e9));
    if (r) {
      if (max_tokens != std::floor(max_tokens))
        return bad(name, std::string("'") + name + "' must be an integer");
      p.max_tokens = static_cast<std::size_t>(max_tokens);
      p.max_tokens_given = true;
    }
  }
  AEG_TRY(number(j, "temperature", p.sampling.temperature, 0, 2));
  AEG_TRY(number(j, "top_p", p.sampling.top_p, 0, 1));
  if (p.sampling.top_p <= 0)
    return bad("top_p", "'top_p' must be greater than 0");
  AEG_TRY(number(j, "top_k", p.sampling.top_k, -1, 1e6));
  if (p.sampling.top_k < 0)
    p.sampling.top_k = 0; // -1 means no limit, as in vLLM
  std::int64_t seed = 0;
  AEG_TRY_ASSIGN(auto seeded, number(j, "seed", seed, -9.2e18, 9.2e18));
  if (seeded) {
    p.seed_given = true;
    p.sampling.seed = static_cast<std::uint64_t>(seed);
  }
  return {};
}

// What this server does not do, refused by name, never silently ignored; and ignore_eos.
tl::expected<void, api_error> parse_unsupported(const json& j, completion_params& p) {
  for (const char* unsupported : {"tools", "functions", "suffix"}) {
    auto it = j.find(unsupported);
    if (it != j.end() && !it->is_null() && *it != false && !(it->is_array() && it->empty()))
      return bad(unsupported, std::string("'") + unsupported + "' is not supported by this server");
  }
  if (auto e = j.find("echo"); e != j.end() && !e->is_null()) {
    if (!e->is_boolean())
      return bad("echo", "'echo' must be true or false");
    if (e->get<bool>() && p.chat)
      return bad("echo", "'echo' is for /v1/completions; a chat answer does not repeat the "
                         "conversation");
    p.echo = e->get<bool>();
  }
  // Parameters that would change the answer if honoured: refused unless they ask for the
  // neutral setting, never ignored.
  if (auto b = j.find("logit_bias");
      b != j.end() && !b->is_null() && !(b->is_object() && b->empty()))
    return bad("logit_bias", "'logit_bias' is not supported by this server");
  struct neutral {
    const char* name;
    double lo, hi, value;
  };
  for (const auto& [name, lo, hi, value] :
       {neutral{"presence_penalty", -2, 2, 0}, neutral{"frequency_penalty", -2, 2, 0},
        neutral{"repetition_penalty", 0, 1e9, 1}, neutral{"min_p", 0, 1, 0}}) {
    double v = value;
    AEG_TRY(number(j, name, v, lo, hi));
    if (v != value)
      return bad(name, std::string("'") + name +
                           "' is not supported by this server; leave it out or " + "set it to " +
                           show(value));
  }
  if (auto f = j.find("response_format"); f != j.end() && !f->is_null()) {
    if (!f->is_object() || !f->contains("type") || !(*f)["type"].is_string())
      return bad("response_format", "'response_format' must be an object with a string 'type'");
    if ((*f)["type"] != "text")
      return bad("response_format", "'response_format' of type '" +
                                        (*f)["type"].get<std::string>() +
                                        "' is not supported by this server; only 'text' is");
  }
  if (auto t = j.find("tool_choice"); t != j.end() && !t->is_null() && *t != "none" && *t != "auto")
    return bad("tool_choice", "'tool_choice' is not supported by this server (it has no tools)");
  if (auto m = j.find("modalities"); m != j.end() && !m->is_null() && *m != json::array({"text"}))
    return bad("modalities", "only the 'text' modality is supported by this server");
  if (auto r = j.find("ignore_eos"); r != j.end() && !r->is_null()) {
    if (!r->is_boolean())
      return bad("ignore_eos", "'ignore_eos' must be true or false");
    p.ignore_eos = r->get<bool>();
  }
  return {};
}

// How many choices, and the log-probabilities each token shows: a completion's `logprobs` is the
// number of alternatives; a chat's is true or false, with `top_logprobs` alternatives.
tl::expected<void, api_error> parse_choices(const json& j, completion_params& p) {
  AEG_TRY(number(j, "n", p.n, 1, static_cast<double>(max_choices)));
  std::size_t best_of = p.n;
  AEG_TRY(number(j, "best_of", best_of, 1, static_cast<double>(max_choices)));
  if (best_of != p.n)
    return bad("best_of", "'best_of' must equal 'n': every choice generated is returned");
  const auto top = static_cast<double>(models::max_top_logprobs);
  if (!p.chat) {
    AEG_TRY_ASSIGN(auto asked, number(j, "logprobs", p.logprobs, 0, top));
    if (!asked)
      p.logprobs = -1;
  } else if (auto l = j.find("logprobs"); l != j.end() && !l->is_null()) {
    if (!l->is_boolean())
      return bad("logprobs", "'logprobs' must be true or false (with 'top_logprobs' for "
                             "alternatives)");
    p.logprobs = l->get<bool>() ? 0 : -1;
  }
  if (p.chat) {
    std::int32_t alternatives = 0;
    AEG_TRY_ASSIGN(auto asked, number(j, "top_logprobs", alternatives, 0, top));
    if (asked && p.logprobs < 0 && alternatives > 0)
      return bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (p.logprobs >= 0)
      p.logprobs = alternatives;
  }
  if (p.echo && p.logprobs >= 0)
    return bad("logprobs", "'logprobs' with 'echo' would need the prompt's log-probabilities, "
                           "which this server does not compute; ask for one of them");
  return {};
}

tl::expected<void, api_error> parse_stops(const json& j, completion_params& p) {
  // Stop: a string, or up to 4 strings and token ids.
  if (auto s = j.find("stop"); s != j.end() && !s->is_null()) {
    auto add = [&](const json& v) -> tl::expected<void, api_error> {
      if (v.is_string()) {
        if (v.get<std::string>().empty())
          return bad("stop", "stop strings must not be empty");
        p.stop_strings.push_back(v.get<std::string>());
      } else if (v.is_number_integer() && v.get<std::int64_t>() >= 0 &&
                 v.get<std::int64_t>() <= std::numeric_limits<std::int32_t>::max()) {
        p.stop_tokens.push_back(v.get<std::int32_t>());
      } else {
        return bad("stop", "'stop' holds strings or token ids");
      }
      return {};
    };
    if (s->is_array()) {
      if (s->size() > 4)
        return bad("stop", "'stop' holds at most 4 sequences");
      for (const auto& v : *s)
        AEG_TRY(add(v));
    } else if (auto r = add(*s); !r) {
      return tl::unexpected(r.error());
    }
  }
  p.stop_tokens_from_stop = p.stop_tokens.size();
  if (auto ids = j.find("stop_token_ids"); ids != j.end() && !ids->is_null()) {
    if (!ids->is_array())
      return bad("stop_token_ids", "'stop_token_ids' must be an array of token ids");
    if (ids->size() > 256)
      return bad("stop_token_ids", "'stop_token_ids' holds at most 256 ids");
    for (const auto& v : *ids) {
      if (!v.is_number_integer() || v.get<std::int64_t>() < 0 ||
          v.get<std::int64_t>() > std::numeric_limits<std::int32_t>::max())
        return bad("stop_token_ids", "'stop_token_ids' must hold token ids (0 to 2^31-1)");
      p.stop_tokens.push_back(v.get<std::int32_t>());
    }
  }
  return {};
}

tl::expected<void, api_error> parse_stream(const json& j, completion_params& p) {
  if (auto s = j.find("stream"); s != j.end() && !s->is_null()) {
    if (!s->is_boolean())
      return bad("stream", "'stream' must be true or false");
    p.stream = s->get<bool>();
  }
  if (auto o = j.find("stream_options"); o != j.end() && !o->is_null()) {
    if (!o->is_object())
      return bad("stream_options", "'stream_options' must be an object");
    if (!p.stream)
      return bad("stream_options", "'stream_options' is only allowed with stream: true");
    if (auto u = o->find("include_usage"); u != o->end() && !u->is_null()) {
      if (!u->is_boolean())
        return bad("stream_options", "'stream_options.include_usage' must be true or false");
      p.include_usage = u->get<bool>();
    }
  }
  return {};
}

tl::expected<completion_params, api_error> parse_fields(const json& j, bool chat) {
  if (!j.is_object())
    return bad("", "the body must be a JSON object");
  completion_params p;
  p.chat = chat;
  if (!j.contains("model") || !j["model"].is_string() || j["model"].get<std::string>().empty())
    return bad("model", "'model' is required and must be a string (GET /v1/models lists them)");
  p.model = j["model"].get<std::string>();
  AEG_TRY(chat ? parse_chat(j, p) : parse_prompt(j, p));
  AEG_TRY(parse_sampling(j, p));
  AEG_TRY(parse_unsupported(j, p));
  AEG_TRY(parse_choices(j, p));
  AEG_TRY(parse_stops(j, p));
  AEG_TRY(parse_stream(j, p));
  return p;
}

} // namespace

tl::expected<std::vector<chat_turn>, api_error> parse_messages(const json& j) {
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
    return bad("messages", "'messages' must be a non-empty array");
  std::vector<chat_turn> turns;
  for (std::size_t i = 0; i < j["messages"].size(); ++i) {
    const auto& m = j["messages"][i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      return bad("messages", "messages[" + std::to_string(i) + "] needs a string 'role'");
    const auto role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "developer")
      return bad("messages", "messages[" + std::to_string(i) + "].role '" + role +
                                 "' is not supported; use system, user or assistant");
    AEG_TRY_ASSIGN(auto content, message_content(m.value("content", json(nullptr)), i));
    turns.push_back({role == "developer" ? "system" : role, std::move(content)});
  }
  return turns;
}

tl::expected<completion_params, api_error> parse_completion(std::string_view body, bool chat) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    // Syntax errors, and numbers no double holds (1e400).
    return bad("", std::string("the body is not valid JSON: ") + e.what());
  }
  try {
    return parse_fields(j, chat);
  } catch (const json::exception& e) {
    // A field of a type the checks above did not foresee: a client error, not a server fault.
    return bad("", std::string("a field has the wrong type: ") + e.what());
  }
}

// --- stop strings -----------------------------------------------------------------------------

stop_matcher::stop_matcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

std::string stop_matcher::push(std::string_view text) {
  if (stopped_)
    return {};
  pending_ += text;
  // The earliest complete stop string ends the output before it.
  std::size_t cut = std::string::npos;
  for (const auto& s : stops_)
    cut = std::min(cut, pending_.find(s));
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, cut);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  std::size_t keep = 0;
  for (const auto& s : stops_)
    for (std::size_t n = std::min(s.size() - 1, pending_.size()); n > keep; --n)
      if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
  std::string out = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string stop_matcher::flush() {
  if (stopped_)
    return {};
  return std::exchange(pending_, {});
}

std::string models_list(const std::vector<std::string>& names, std::int64_t created) {
  json data = json::array();
  for (const auto& n : names)
    data.push_back({{"id", n}, {"object", "model"}, {"created", created}, {"owned_by", "aegaeon"}});
  return json{{"object", "list"}, {"data", data}}.dump();
}

} // namespace aeg::server
