#pragma once

#include "coro/error.hpp"
#include "models/gguf/file.hpp"

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
  mistral, ///< `<s>[INST] user [/INST]answer</s>[INST] ...` (Mistral Instruct v0.1, v0.2)
};

/// Renders a conversation into the prompt text the model was trained on. There is no Jinja
/// engine: the model's `tokenizer.chat_template` is recognised and the known format is produced
/// in C++, as llama.cpp's built-in template table does. Recognised:
/// - ChatML (the template contains `<|im_start|>`), including a default system prompt that the
///   template inserts when the first message is not a system message (SmolLM2: "You are a
///   helpful AI assistant named SmolLM, trained by Hugging Face");
/// - Llama 3 (`<|start_header_id|>`): each message's content trimmed, BOS before the first.
///   Llama 3.1+'s templates also write a dated system header and tool definitions; those are
///   not reproduced;
/// - Llama 2 (`[INST]` with `<<SYS>>`): the system message folded into the first user turn,
///   BOS before each user turn and EOS after each answer; `add_generation_prompt` changes
///   nothing (the model answers after `[/INST]`). Roles that do not alternate, which the Jinja
///   template refuses, are rendered as they come;
/// - Mistral Instruct v0.1/v0.2 (`' [/INST]'` without `<<SYS>>`): BOS once, each answer followed
///   by EOS. The template refuses a system message; here it opens the first user turn, followed
///   by a blank line (llama.cpp's choice). Later Mistral templates are not recognised.
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

  /// The format called `name` ("chatml", "llama3", "llama2", "mistral"), for a model whose own
  /// template is missing or not recognised; `errc::invalid_argument` naming the known ones.
  [[nodiscard]] static result<chat_template> named(std::string_view name, std::string_view bos = {},
                                                   std::string_view eos = {});
  /// The names `named` knows, comma separated.
  static std::string names();

  /// ChatML, inserting `default_system` (when given) before a conversation whose first message
  /// is not a system message.
  static chat_template chatml(std::optional<std::string> default_system = std::nullopt);

  /// The prompt for `messages`, then the opening of the assistant's turn when
  /// `add_generation_prompt`: byte for byte what the Jinja template renders with the file's BOS
  /// and EOS texts (no trailing text).
  [[nodiscard]] std::string render(std::span<const chat_message> messages,
                                   bool add_generation_prompt) const;

  /// The system prompt inserted when the conversation does not start with one; nullopt if none.
  const std::optional<std::string>& default_system_prompt() const noexcept {
    return default_system_;
  }

  chat_format format() const noexcept { return format_; }
  /// The template family: "chatml", "llama3", "llama2" or "mistral".
  std::string_view name() const noexcept;

private:
  chat_template(chat_format format, std::optional<std::string> default_system, std::string bos,
                std::string eos)
      : format_(format), default_system_(std::move(default_system)), bos_(std::move(bos)),
        eos_(std::move(eos)) {}

  std::string render_chatml(std::span<const chat_message> messages, bool generation) const;
  std::string render_llama3(std::span<const chat_message> messages, bool generation) const;
  std::string render_llama2(std::span<const chat_message> messages) const;
  std::string render_mistral(std::span<const chat_message> messages) const;

  chat_format format_ = chat_format::chatml;
  std::optional<std::string> default_system_;
  std::string bos_, eos_;
};

} // namespace aeg::models
