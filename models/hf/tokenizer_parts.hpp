#pragma once

// The readers of a Hugging Face folder's tokenizer files, shared by its sources only.
#include "models/hf/folder.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace aeg::models::hf {

/// GGUF token types, numbered as llama.cpp (and SentencePiece's ModelProto) number them.
namespace token_type {
constexpr std::int32_t normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6;
} // namespace token_type

/// A vocabulary being assembled: texts and GGUF types by id, and ids by text.
struct vocabulary {
  std::vector<std::string> tokens;                      ///< by id
  std::vector<std::int32_t> types;                      ///< by id, `token_type` numbers
  std::map<std::string, std::int32_t, std::less<>> ids; ///< by text

  /// The id of a token text, when the vocabulary holds it.
  std::optional<std::int32_t> id(const std::optional<std::string>& text) const {
    if (!text)
      return std::nullopt;
    auto it = ids.find(*text);
    return it == ids.end() ? std::nullopt : std::optional(it->second);
  }
};

/// What the tokenizer file itself says about special tokens, used where tokenizer_config.json
/// is silent.
struct special_defaults {
  /// Ids the tokenizer file names for these roles (tokenizer.model's trainer_spec ids).
  std::optional<std::int32_t> bos, eos, unknown, padding;
  /// The special token tokenizer.json's post-processor puts first: BOS is added when it is BOS.
  std::optional<std::int32_t> leading;
  /// Whether prompts start with BOS when neither tokenizer_config.json nor `leading` says.
  bool add_bos = false;
};

/// Appends the special-token ids, add_bos_token and chat template (from tokenizer_config.json,
/// generation_config.json and chat_template.jinja in `dir`, else `defaults`) to `out`. May
/// throw nlohmann::json exceptions for configs of an unexpected shape.
result<void> append_special_tokens(const std::string& dir, const vocabulary& vocab,
                                   const special_defaults& defaults, metadata& out);

/// The tokenizer of a folder from its tokenizer.json (`read_tokenizer` prefers it).
result<void> read_tokenizer_json(const std::string& dir, std::size_t vocab_size, metadata& out);

/// The tokenizer of a folder from its SentencePiece tokenizer.model, as llama.cpp's converter
/// writes it: pieces, scores and types, tokenizer_config.json's added tokens, padded with unused
/// tokens to `vocab_size`.
result<void> read_tokenizer_model(const std::string& dir, std::size_t vocab_size, metadata& out);

} // namespace aeg::models::hf
