#pragma once

#include "coro/error.hpp"
#include "models/gguf/file.hpp"
#include "models/tokenizer/chat_template_text.hpp"

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace aeg::models {

/// One turn of a conversation.
struct chat_message {
  std::string role;    ///< "system", "user" or "assistant" (rendered verbatim)
  std::string content; ///< rendered verbatim
};

/// The prompt formats `chat_template` renders.
enum class chat_format {
  chatml,  ///< `<|im_start|>role\ncontent<|im_end|>\n` (Qwen, SmolLM, ...)
  llama3,  ///< `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` after BOS
  llama2,  ///< `<s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] answer </s>` (Llama 2)
  mistral, ///< `<s>[INST] user [/INST]answer</s>[INST] ...` (Mistral 7B v0.1/v0.2's first)
  /// Llama 3.1, 3.2, 3.3: llama3 after a system header always written, which carries the
  /// template's `Cutting Knowledge Date: December 2023\n`, then `Today Date: <date>\n\n`, before
  /// the system message
  llama3_1,
  /// `<s> [INST] system\n\nuser [/INST] answer</s> [INST] ...` (the template Mistral 7B
  /// Instruct v0.1 and v0.2 carry now)
  mistral_v1,
  /// `<s>[INST] user[/INST] answer</s>[INST] system\n\nuser[/INST]`: the system message opens
  /// the last user turn (7B Instruct v0.3, Large 2407, Small 2409)
  mistral_v3,
  /// mistral_v3 without the blanks: `<s>[INST]user[/INST]answer</s>` (Nemo)
  mistral_v3_tekken,
  /// `<s>[SYSTEM_PROMPT] system[/SYSTEM_PROMPT][INST] user[/INST] answer</s>` (Large 2411)
  mistral_v7,
  /// mistral_v7 without the blanks, and the template's default system prompt when the
  /// conversation brings none (Small 3.x, Ministral 3)
  mistral_v7_tekken,
};

/// Renders a conversation into the prompt text the model was trained on. There is no Jinja
/// engine: the model's `tokenizer.chat_template` is recognised and the known format is produced
/// in C++, as llama.cpp's built-in template table does; the result is byte for byte what
/// transformers' `apply_chat_template(..., tokenize=False)` renders (tests/models/fixtures/
/// chat_templates holds the real templates and transformers' renderings). Recognised:
/// - ChatML (the template contains `<|im_start|>`), including a default system prompt that the
///   template inserts when the first message is not a system message (SmolLM2: "You are a
///   helpful AI assistant named SmolLM, trained by Hugging Face");
/// - Llama 3 (`<|start_header_id|>`): each message's content trimmed (as Python's `strip()`),
///   BOS before the first;
/// - Llama 3.1+ (`<|start_header_id|>` and a `Cutting Knowledge Date` literal): the system
///   header, then as Llama 3. The date is the one transformers renders: today's (local) date in
///   the template's `strftime_now` format when it calls `strftime_now` (3.2: "%d %b %Y"), else
///   the template's own `date_string` default (3.1, 3.3: "26 Jul 2024"). A `tool` or `ipython`
///   message is written as the template writes it (an `ipython` header, the content as a JSON
///   string); tool definitions and tool calls, which messages here do not carry, are not;
/// - Llama 2 (`[INST]` with `<<SYS>>`): the system message folded into the first user turn,
///   BOS before each user turn and EOS after each answer; `add_generation_prompt` changes
///   nothing (the model answers after `[/INST]`). Roles that do not alternate, which the Jinja
///   template refuses, are rendered as they come;
/// - Mistral (`[INST]` without `<<SYS>>`), told apart by the literals around `[INST]`: v0.1/v0.2
///   (`' [/INST]'`), v1 (`' [INST] '`), v3 (`'[INST] '` and `'[/INST]'`), v3-tekken (`'[INST]'`),
///   v7 (`'[SYSTEM_PROMPT] '`) and v7-tekken (`'[SYSTEM_PROMPT]'`, with the default system
///   message the template sets, dated as Llama 3.1's is). BOS once, each answer followed by EOS,
///   `add_generation_prompt` changes nothing. What the templates refuse (a system message in
///   v0.1/v0.2, roles out of turn) is rendered as it comes; roles other than system, user and
///   assistant (v7-tekken: and tool) are left out. v0.1/v0.2's system message opens the first
///   user turn, followed by a blank line (llama.cpp's choice).
///
/// Immutable; safe to share between threads.
class chat_template {
public:
  /// The template of `f`: ChatML with no default system prompt when the file has no
  /// `tokenizer.chat_template`; `errc::invalid_argument` when it has one that is none of the
  /// formats above (a caller that prefers to go on can fall back to `chat_template::chatml()`
  /// and warn). BOS and EOS texts come from the file's vocabulary.
  [[nodiscard]] static result<chat_template> from_gguf(const gguf::file& f);

  /// Recognises a Jinja chat template's text, as `from_gguf` does; `bos` and `eos` are the
  /// texts of those tokens (empty: the format's usual ones).
  [[nodiscard]] static result<chat_template>
  from_text(std::string_view jinja, std::string_view bos = {}, std::string_view eos = {});

  /// The format called `name` (see `names()`), for a model whose own template is missing or
  /// not recognised; `errc::invalid_argument` naming the known ones. Without the template's
  /// text, "llama3.1" writes Llama 3.1's default date (26 Jul 2024) and "mistral-v7-tekken" no
  /// default system prompt.
  [[nodiscard]] static result<chat_template> named(std::string_view name, std::string_view bos = {},
                                                   std::string_view eos = {});
  /// The names `named` knows, comma separated: "chatml, llama3, llama2, mistral, llama3.1,
  /// mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, mistral-v7-tekken".
  static std::string names();

  /// ChatML, inserting `default_system` (when given) before a conversation whose first message
  /// is not a system message.
  static chat_template chatml(std::optional<std::string> default_system = std::nullopt);

  /// The prompt for `messages`, then the opening of the assistant's turn when
  /// `add_generation_prompt`: byte for byte what the Jinja template renders with the file's BOS
  /// and EOS texts (no trailing text), on today's local date.
  [[nodiscard]] std::string render(std::span<const chat_message> messages,
                                   bool add_generation_prompt) const {
    return render(messages, add_generation_prompt, chat_text::today());
  }
  /// As above, as the template renders on `day` (only templates that write today's date
  /// depend on it).
  [[nodiscard]] std::string render(std::span<const chat_message> messages,
                                   bool add_generation_prompt, chat_text::day day) const;

  /// The system prompt inserted when the conversation does not start with one, as written on
  /// `day`; nullopt if none.
  std::optional<std::string> default_system_prompt(chat_text::day day = chat_text::today()) const;

  chat_format format() const noexcept { return format_; }
  /// The template family, as `named` knows it ("chatml", "llama3.1", "mistral-v7", ...).
  std::string_view name() const noexcept;

private:
  chat_template(chat_format format, std::string bos, std::string eos)
      : format_(format), bos_(std::move(bos)), eos_(std::move(eos)) {}

  std::string render_chatml(std::span<const chat_message> messages, bool generation,
                            chat_text::day day) const;
  std::string render_llama3(std::span<const chat_message> messages, bool generation) const;
  std::string render_llama3_1(std::span<const chat_message> messages, bool generation,
                              chat_text::day day) const;
  std::string render_llama2(std::span<const chat_message> messages) const;
  std::string render_inst(std::span<const chat_message> messages) const;
  std::string render_system_prompt(std::span<const chat_message> messages,
                                   chat_text::day day) const;

  chat_format format_ = chat_format::chatml;
  std::string bos_, eos_;
  std::optional<chat_text::dated_text> default_system_;
  chat_text::date_rule date_;  ///< the date a dated header or default system prompt writes
  std::string knowledge_line_; ///< llama3_1: "Cutting Knowledge Date: December 2023\n"
};

} // namespace aeg::models
