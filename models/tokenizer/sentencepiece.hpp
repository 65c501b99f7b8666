#pragma once

#include "coro/error.hpp"
#include "models/gguf/file.hpp"
#include "models/tokenizer/tokenizer.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace aeg::models {

/// The text-to-ids step of a SentencePiece BPE vocabulary (`tokenizer.ggml.model = "llama"`:
/// Llama 2, Mistral, Yi, TinyLlama...), as llama.cpp's `llm_tokenizer_spm` runs it. Internal to
/// `tokenizer`, which cuts special tokens out first and hands each run of text between them to
/// `encode`.
///
/// A run becomes initial symbols, one per UTF-8 character (its length read from the lead byte,
/// as llama.cpp does, so ill-formed bytes stay bytes), with every space spelled U+2581 "▁". The
/// adjacent pair whose concatenation is a token with the highest score merges first (the
/// leftmost pair on equal scores), until no pair makes a token. A symbol left that is no token
/// becomes one `<0xXX>` byte token per byte (byte fallback), or, in a vocabulary without them,
/// the unknown token (one for a run of such symbols, as SentencePiece does).
///
/// Only normal, user-defined and unused tokens are merge results, as in SentencePiece itself:
/// llama.cpp also merges into control, unknown and byte tokens, so that plain text such as
/// "</s>" could become the end-of-sequence token when the vocabulary holds "</s" as a normal
/// token. An unused token that a merge makes is split back into the two symbols that made it
/// (SentencePiece's resegmentation; llama.cpp keeps it).
///
/// Immutable after `from_gguf`; any number of threads may call `encode` at once.
class sentencepiece {
public:
  /// Reads `tokenizer.ggml.scores` (one float per token) and `tokenizer.ggml.add_space_prefix`
  /// (default true) from `f`, for the vocabulary `texts` (distinct, as `tokenizer` makes them)
  /// whose kinds are `kinds`. `unknown` is the id emitted for text no token covers when the
  /// vocabulary has no byte tokens. `errc::not_found` without scores; `errc::corrupt_data` for
  /// scores that are not a float array of one finite value per token.
  [[nodiscard]] static result<sentencepiece> from_gguf(const gguf::file& f,
                                                       std::span<const std::string> texts,
                                                       std::span<const token_kind> kinds,
                                                       std::optional<std::int32_t> unknown);

  /// Appends the ids of `text`, one run of raw text between special tokens, to `out`. `at_start`
  /// says the run begins the input or follows a special token: then, when `add_space_prefix()`,
  /// a space is put before it (llama.cpp's rule, as SentencePiece's dummy prefix).
  void encode(std::string_view text, bool at_start, std::vector<std::int32_t>& out) const;

  /// Whether a run of text that starts the input gets a leading space before it is tokenized,
  /// and decoding drops the leading space of the first token (`tokenizer.ggml.add_space_prefix`).
  bool add_space_prefix() const noexcept { return add_space_prefix_; }

  /// The bytes a normal token stands for: its text with every "▁" (U+2581) a space.
  static std::string unescape(std::string_view text);

private:
  struct entry {
    std::int32_t id;
    float score;
    bool mergeable; // normal, user-defined or unused: a merge may make it
    bool unused;
  };
  struct text_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  struct session;

  sentencepiece() = default;

  std::unordered_map<std::string, entry, text_hash, std::equal_to<>> tokens_;
  std::array<std::int32_t, 256> byte_tokens_{}; // -1 where the vocabulary has none
  std::optional<std::int32_t> unknown_;
  bool add_space_prefix_ = true;
};

} // namespace aeg::models
