#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace aeg::apps {

/// The model `generate` and `chat` run without --model: where scripts/fetch-model puts it,
/// relative to the current directory (the project root).
inline constexpr const char* default_model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Settings shared by `aegaeon generate` and `aegaeon chat`.
struct generate_options {
  std::string model_path;
  std::string prompt;        ///< generate: "-" reads it from standard input
  std::string system_prompt; ///< chat: replaces the model's default system prompt
  std::size_t max_tokens = 256;
  float temperature = 0; ///< 0: greedy
  float top_p = 1;
  int top_k = 0;
  std::optional<std::uint64_t> seed; ///< unset: a new seed each run (sampling only)
  bool chat_template = false;        ///< generate: wrap the prompt in the model's chat template
  std::string template_name;         ///< the chat format to use instead of the model's own
  std::string backend = "cpu";
  std::size_t capacity_mib = 0; ///< device memory budget; 0: the backend's default
  bool verbose = false;         ///< timings and token counts on stderr
  std::string url;              ///< chat with a running server instead (model_path is its name)
  std::string api_key;          ///< for a server that asks for one
};

/// `aegaeon generate`: prints the continuation of one prompt as it is generated. Exit code 2
/// for what the user gave that cannot work (no model file there, an empty prompt, too little
/// --memory-mib), 1 for a failure while loading or generating.
int run_generate(generate_options options);

/// `aegaeon chat`: an interactive conversation on stdin/stdout that streams each answer. A turn
/// that fails is reported and the session goes on: exit code 0 when it ends at /quit or end of
/// input, 1 when a failure ends it (the instance stopped), 2 as for `generate`.
int run_chat(const generate_options& options);

/// What the next turn of `chat` asks for.
enum class chat_turn { message, reset, quit };

/// Reads the next line of a chat session into `line` (after a "> " prompt on a terminal). Blank
/// lines are skipped and /help or an unknown command answered here, so the caller sees a
/// message, /reset, or /quit (also end of input). Only a line starting with '/' is a command.
chat_turn read_chat_turn(bool tty, std::string& line);

/// What `chat` answers to /help (and prints on a terminal when it starts).
inline constexpr const char* chat_help =
    "/help lists these; /reset forgets the conversation; /quit or /exit (or Ctrl-D) leaves";

/// The `-v` line after an answer, on stderr, the same in process and over HTTP.
void print_answer_stats(std::size_t prompt_tokens, std::size_t completion_tokens,
                        std::string_view finish, double first_token_seconds, double seconds);

} // namespace aeg::apps
