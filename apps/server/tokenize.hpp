#pragma once

// /tokenize and /detokenize, as vLLM's and llama.cpp's servers answer them: a model's token ids
// for a text or a conversation, and the text of token ids. Plain functions of the request body
// and the served models, no actors.

#include "apps/server/completion_request.hpp"
#include "apps/server/openai.hpp"

#include <tl/expected.hpp>

#include <map>
#include <string>
#include <string_view>

namespace aeg::server {

/// The answer to a /tokenize body: {"tokens": [...], "count", "max_model_len"}. The text is
/// "prompt" (vLLM) or "content" (llama.cpp), encoded as a completion prompt is (BOS first when
/// the model wants one, unless "add_special_tokens"/"add_special" is false), or "messages",
/// rendered by the model's chat template with the assistant's turn opened. "with_pieces" makes
/// each token {"id", "piece"}. "model" may be left out when one model is served.
tl::expected<std::string, api_error> tokenize(std::string_view body,
                                              const std::map<std::string, served_text>& models);

/// The answer to a /detokenize body {"model", "tokens": [ids]}: {"prompt": text} (vLLM), with
/// the same text as "content" (llama.cpp). Ids outside the vocabulary are an error that names
/// the first one.
tl::expected<std::string, api_error> detokenize(std::string_view body,
                                                const std::map<std::string, served_text>& models);

} // namespace aeg::server
