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

/// Renders a conversation into the prompt text the model was trained on. There is no Jinja
/// engine: the model's `tokenizer.chat_template` is recognised and the known format is produced
/// in C++, as llama.cpp's built-in template table does. Supported: ChatML (the template contains
/// `<|im_start|>`), including a default system prompt that the template inserts when the first
/// message is not a system message (SmolLM2: "You are a helpful AI assistant named SmolLM,
/// trained by Hugging Face").
///
/// Immutable; safe to share between threads.
class chat_template {
public:
  /// The template of `f`: ChatML with no default system prompt when the file has no
  /// `tokenizer.chat_template`; `errc::invalid_argument` when it has one that is not ChatML (a
  /// caller that prefers to go on can fall back to `chat_template::chatml()` and warn).
  [[nodiscard]] static result<chat_template> from_gguf(const gguf::file& f);

  /// Recognises a Jinja chat template's text, as `from_gguf` does.
  [[nodiscard]] static result<chat_template> from_text(std::string_view jinja);

  /// ChatML, inserting `default_system` (when given) before a conversation whose first message
  /// is not a system message.
  static chat_template chatml(std::optional<std::string> default_system = std::nullopt);

  /// The prompt for `messages`, then `<|im_start|>assistant\n` when `add_generation_prompt`:
  /// byte for byte what the Jinja template renders (no BOS, no trailing text).
  [[nodiscard]] std::string render(std::span<const chat_message> messages,
                                   bool add_generation_prompt) const;

  /// The system prompt inserted when the conversation does not start with one; nullopt if none.
  const std::optional<std::string>& default_system_prompt() const noexcept {
    return default_system_;
  }

  /// The template family: "chatml".
  std::string_view name() const noexcept { return "chatml"; }

private:
  explicit chat_template(std::optional<std::string> default_system)
      : default_system_(std::move(default_system)) {}

  std::optional<std::string> default_system_;
};

} // namespace aeg::models
