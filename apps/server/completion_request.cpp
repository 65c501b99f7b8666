#include "apps/server/completion_request.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <random>
#include <span>

namespace aeg::server {

namespace {

// Token ids the client gave must be the model's.
std::optional<api_error> outside_vocabulary(std::span<const std::int32_t> ids, std::size_t vocab,
                                            const char* what, const char* param) {
  for (auto t : ids)
    if (t < 0 || static_cast<std::size_t>(t) >= vocab)
      return api_error{
          .message = fmt::format("{} id {} is outside the vocabulary of {} tokens", what, t, vocab),
          .param = param};
  return std::nullopt;
}

tl::expected<std::vector<std::int32_t>, api_error> prompt_of(const completion_params& p,
                                                             const served_text& m) {
  std::vector<std::int32_t> prompt;
  if (p.chat) {
    prompt = encode_chat(m, p.messages);
  } else if (!p.prompt_tokens.empty()) {
    prompt = p.prompt_tokens;
    if (auto e = outside_vocabulary(prompt, m.text.vocab_size(), "token", "prompt"))
      return tl::unexpected(*e);
  } else {
    prompt = m.text.encode_prompt(p.prompt);
  }
  if (prompt.empty())
    return tl::unexpected(api_error{.message = "the prompt has no tokens", .param = "prompt"});
  if (m.max_prompt_tokens != 0 && prompt.size() > m.max_prompt_tokens)
    return tl::unexpected(api_error{
        .message = fmt::format("the prompt has {} tokens; this server takes prompts of at most {} "
                               "for this model",
                               prompt.size(), m.max_prompt_tokens),
        .param = p.chat ? "messages" : "prompt",
        .code = "prompt_too_long"});
  if (prompt.size() >= m.context_length)
    return tl::unexpected(api_error{
        .message = fmt::format("this model's context is {} tokens; the prompt has {}, leaving "
                               "no room to generate",
                               m.context_length, prompt.size()),
        .param = p.chat ? "messages" : "prompt",
        .code = "context_length_exceeded"});
  return prompt;
}

} // namespace

std::vector<std::int32_t> encode_chat(const served_text& model,
                                      const std::vector<chat_turn>& turns) {
  std::vector<models::chat_message> messages;
  for (const auto& t : turns)
    messages.push_back({t.role, t.content});
  return model.text.encode_chat(messages);
}

tl::expected<completion_plan, api_error>
plan_completion(completion_params& p, const std::string& model_name, const served_text& m) {
  auto prompt = prompt_of(p, m);
  if (!prompt)
    return tl::unexpected(prompt.error());
  // Named by the field that gave the id.
  const std::span<const std::int32_t> stops(p.stop_tokens);
  const auto vocab = m.text.vocab_size();
  if (auto e =
          outside_vocabulary(stops.first(p.stop_tokens_from_stop), vocab, "stop token", "stop"))
    return tl::unexpected(*e);
  if (auto e = outside_vocabulary(stops.subspan(p.stop_tokens_from_stop), vocab, "stop token",
                                  "stop_token_ids"))
    return tl::unexpected(*e);
  const std::size_t room = m.context_length - prompt->size();
  if (p.max_tokens_given && p.max_tokens > room)
    return tl::unexpected(
        api_error{.message = fmt::format("this model's context is {} tokens; the prompt has {} and "
                                         "max_tokens asks for {} more; ask for at most {}",
                                         m.context_length, prompt->size(), p.max_tokens, room),
                  .param = "max_tokens",
                  .code = "context_length_exceeded"});
  if (!p.seed_given)
    p.sampling.seed = std::random_device{}();

  completion_plan plan;
  auto& r = plan.request;
  r.model = model_name;
  r.prompt = std::move(*prompt);
  r.sampling = p.sampling;
  r.logprobs = p.logprobs;
  r.max_tokens = p.max_tokens_given ? p.max_tokens : (p.chat ? room : std::min(room, p.max_tokens));
  r.stop_tokens = p.stop_tokens;
  plan.silent_tokens.insert(p.stop_tokens.begin(), p.stop_tokens.end());
  if (!p.ignore_eos) {
    const auto& eog = m.text.stop_tokens();
    r.stop_tokens.insert(r.stop_tokens.end(), eog.begin(), eog.end());
    plan.silent_tokens.insert(eog.begin(), eog.end());
  }
  return plan;
}

} // namespace aeg::server
