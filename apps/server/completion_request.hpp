#pragma once

#include "actors/generation.hpp"
#include "apps/server/openai.hpp"
#include "models/tokenizer/text_model.hpp"

#include <tl/expected.hpp>

#include <cstddef>
#include <cstdint>
#include <set>

namespace aeg::server {

/// A model as the server speaks to it.
struct served_text {
  models::text_model text;
  std::size_t context_length = 0;
  std::size_t max_prompt_tokens = 0; ///< 0: up to the context
};

/// A conversation's tokens, through `model`'s chat template with the assistant's turn opened.
std::vector<std::int32_t> encode_chat(const served_text& model,
                                      const std::vector<chat_turn>& turns);

/// A completion request ready for the pool, and what its answer needs to know.
struct completion_plan {
  actors::generation_request request;
  /// Tokens whose text is not part of the answer: the client's stop tokens and, unless it asked
  /// to ignore them, the model's end-of-generation tokens.
  std::set<std::int32_t> silent_tokens;
};

/// Turns what a client asked (`p`, checked by `parse_completion`) into a request for `model`:
/// the prompt's tokens (a conversation through the chat template, a text prompt, or token ids
/// given directly), stop tokens, max_tokens, a seed. Errors in OpenAI's shape name the parameter:
/// ids outside the vocabulary, an empty prompt, one that leaves the context no room, max_tokens
/// past the context.
tl::expected<completion_plan, api_error>
plan_completion(completion_params& p, const std::string& model_name, const served_text& model);

} // namespace aeg::server
