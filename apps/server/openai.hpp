#pragma once

#include "models/sampling.hpp"

#include <nlohmann/json_fwd.hpp>
#include <tl/expected.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// OpenAI's request and response shapes, as plain code: what a completion or chat request asks
// for (validated, with errors that name the parameter), and the JSON of the answers.

namespace aeg::server {

/// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with its status.
struct api_error {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;   ///< empty: null
  std::string code;    ///< empty: null
  int retry_after = 0; ///< seconds, for 429 and 503
  std::string allow;   ///< for 405: the methods the path answers

  std::string json() const;
};

/// One chat message as it arrived.
struct chat_turn {
  std::string role;
  std::string content;
};

/// A chat's `messages` in a parsed request body: each role (system, user, assistant; developer
/// read as system) and its text (a string, or text parts joined). Errors name the message.
tl::expected<std::vector<chat_turn>, api_error> parse_messages(const nlohmann::json& body);

/// The most choices (`n`) one request may ask for.
inline constexpr std::size_t max_choices = 16;

/// What a completion or chat request asks for, checked.
struct completion_params {
  bool chat = false;
  std::string model;
  std::string prompt;                      ///< completions: text (empty when prompt_tokens)
  std::vector<std::int32_t> prompt_tokens; ///< completions: token ids given directly
  std::vector<chat_turn> messages;         ///< chat
  std::size_t max_tokens = 16;             ///< completions default 16; chat: to the context
  bool max_tokens_given = false;
  models::sampling_params sampling{.temperature = 1, .top_k = 0, .top_p = 1, .seed = 0};
  bool seed_given = false;
  std::vector<std::string> stop_strings;
  std::vector<std::int32_t> stop_tokens; ///< from 'stop', then from 'stop_token_ids'
  std::size_t stop_tokens_from_stop = 0; ///< how many of stop_tokens 'stop' gave
  bool ignore_eos = false; ///< keep generating past end-of-generation tokens (for benchmarks)
  bool echo = false;       ///< completions: the answer begins with the prompt's text
  std::size_t n = 1;       ///< choices, each generated on its own from the same prompt
  /// -1: no log-probabilities; k >= 0: each token's, with its k most likely alternatives.
  std::int32_t logprobs = -1;
  bool stream = false;
  bool include_usage = false;
};

/// Parses a POST body for /v1/completions (`chat` false) or /v1/chat/completions. Unknown fields
/// are ignored, as OpenAI's clients send many; known fields with bad values, and features this
/// server does not have (tools, logit_bias, penalties), are errors that name the parameter.
tl::expected<completion_params, api_error> parse_completion(std::string_view body, bool chat);

/// Finds stop strings in generated text as it streams. `push` returns the text that can be sent
/// now: text that might be the start of a stop string is held back until it is known not to be.
class stop_matcher {
public:
  explicit stop_matcher(std::vector<std::string> stops);
  /// Adds text; returns what is safe to emit. Once a stop string is seen, `stopped()` is true
  /// and nothing after the text before it is ever emitted.
  std::string push(std::string_view text);
  /// The held-back text, at the end of generation (nothing once stopped).
  std::string flush();
  bool stopped() const noexcept { return stopped_; }

private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

/// Token counts of a finished request.
struct usage_counts {
  std::size_t prompt_tokens = 0, completion_tokens = 0;
};

/// One generated token's log-probabilities as an answer shows them.
struct logprob_entry {
  std::string token; ///< its text (its bytes: it may end inside a character)
  float logprob = 0; ///< -infinity is shown as -9999.0, as OpenAI does
  std::vector<std::pair<std::string, float>> top; ///< the most likely tokens, most likely first
  std::size_t text_offset = 0; ///< completions: where its text begins in the choice's text
};

/// One choice of a whole (not streamed) answer.
struct choice_text {
  std::string text;
  std::string finish_reason;
  std::optional<std::vector<logprob_entry>> logprobs; ///< when asked for
};

/// Builders for the response JSON. `id` is "cmpl-..." or "chatcmpl-...", `created` Unix seconds.
struct response_shape {
  bool chat = false;
  std::string id;
  std::string model;
  std::int64_t created = 0;

  /// The whole non-streaming answer, its choices indexed in order.
  std::string full(const std::vector<choice_text>& choices, const usage_counts& usage) const;
  /// One streamed chunk of choice `index`: text (and the assistant role on a chat choice's
  /// first chunk), or the finish reason with empty text, and the log-probabilities of its
  /// tokens when asked for (null otherwise). With `include_usage` every chunk has "usage": null.
  std::string chunk(std::size_t index, std::string_view text,
                    std::optional<std::string_view> finish_reason, bool first, bool include_usage,
                    const std::vector<logprob_entry>* logprobs = nullptr) const;
  /// The last chunk when include_usage: no choices, the usage.
  std::string usage_chunk(const usage_counts& usage) const;
};

/// Characters (code points) of UTF-8 text, as OpenAI's text offsets count them.
std::size_t text_characters(std::string_view text);

/// {"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}...]}.
std::string models_list(const std::vector<std::string>& names, std::int64_t created);

} // namespace aeg::server
