#pragma once

#include "coro/error.hpp"
#include "models/gguf/file.hpp"
#include "models/tokenizer/chat_template.hpp"
#include "models/tokenizer/stream_decoder.hpp"
#include "models/tokenizer/tokenizer.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace aeg::models {

/// A model's text side: how text becomes its tokens (a completion's prompt, a conversation
/// through its chat template) and its tokens text again, and which tokens end a generation.
/// Built once per model from its GGUF; `generate`, `chat` and the server all speak through it.
/// Immutable; copies share their state, so a synthetic model can use another's.
class text_model {
public:
  /// The text side of `f`. A chat template this code does not render is replaced by ChatML, and
  /// `template_note()` says so. `chat_template`, when given, names the format to use instead of
  /// the file's own (chat_template::names()); an unknown name is an error.
  [[nodiscard]] static result<text_model> from_gguf(const gguf::file& f,
                                                    std::string_view chat_template = {});

  /// A completion prompt's tokens: special tokens written out ("<|im_start|>") are the tokens,
  /// as in other servers, and BOS comes first when the model asks for it.
  std::vector<std::int32_t> encode_prompt(std::string_view text) const;
  /// A conversation's tokens, rendered by the chat template with the assistant's turn opened.
  std::vector<std::int32_t> encode_chat(std::span<const chat_message> messages) const;
  /// A detokenizer for one answer streamed token by token.
  stream_decoder decoder() const { return stream_decoder(tok_); }

  /// The tokens that end a generation (end of sequence, end of turn).
  const std::vector<std::int32_t>& stop_tokens() const noexcept { return stop_tokens_; }
  std::size_t vocab_size() const noexcept { return tok_.num_tokens(); }
  const tokenizer& tokens() const noexcept { return tok_; }
  const chat_template& chat() const noexcept { return chat_; }
  /// Empty, or why the chat template is ChatML although the file names another.
  const std::string& template_note() const noexcept { return template_note_; }

private:
  text_model(tokenizer tok, chat_template chat) : tok_(std::move(tok)), chat_(std::move(chat)) {}
  void collect_stop_tokens();

  tokenizer tok_;
  chat_template chat_;
  std::vector<std::int32_t> stop_tokens_;
  std::string template_note_;
};

} // namespace aeg::models
