#pragma once

#include "coro/error.hpp"
#include "models/gguf/file.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace aeg::models {

/// What a vocabulary entry is: GGUF `tokenizer.ggml.token_type`, numbered as llama.cpp does.
enum class token_kind : std::uint8_t {
  undefined = 0,    ///< a type number llama.cpp does not know; decodes to nothing
  normal = 1,       ///< ordinary text in byte-level spelling
  unknown = 2,      ///< the unknown-token placeholder; special like `control`
  control = 3,      ///< chat and document markers such as `<|im_start|>`
  user_defined = 4, ///< added text that is always matched whole and always rendered
  unused = 5,       ///< a reserved slot; decodes to nothing
  byte = 6,         ///< a `<0xXX>` byte token (SentencePiece style)
};

/// A GGUF model's tokenizer, tokenizing as llama.cpp does. Special tokens are cut out first;
/// the text between them is then tokenized by the file's `tokenizer.ggml.model`:
///
/// - "gpt2", byte-level BPE (SmolLM2, Llama 3, Qwen2): the text is split by the pre-tokenizer
///   named in `tokenizer.ggml.pre` (see `pre_tokenizer`), and each piece is spelled in GPT-2's
///   byte-level alphabet and merged pair by pair, lowest merge rank first (leftmost on ties).
///   Where input bytes have no token: a byte that is not well-formed UTF-8 is kept when the
///   vocabulary has a token for it (so such input round-trips) and becomes U+FFFD otherwise; a
///   character whose byte has no token (SmolLM2 lacks e.g. 0x04) is dropped, as in llama.cpp.
/// - "llama", SentencePiece BPE (Llama 2, Mistral, Yi, TinyLlama): spaces become "▁" (U+2581),
///   a run of text that starts the input or follows a special token gets a "▁" before it
///   (`add_space_prefix()`), and its characters merge by the highest `tokenizer.ggml.scores`
///   score of the token they make; what no token covers becomes `<0xXX>` byte tokens (see
///   `sentencepiece.hpp`). Ill-formed UTF-8 round-trips through byte tokens.
///
/// Immutable after `from_gguf`: copies share one state, and any number of threads may use one
/// object, or its copies, at once. It keeps no reference to the GGUF file.
class tokenizer {
public:
  /// Reads `tokenizer.ggml.*` from `f`: model, tokens, token_type (default: all normal),
  /// bos/eos/unknown/padding/eot/eom ids and add_bos_token; for "gpt2" also merges ("A B",
  /// rank = index) and pre (add_bos_token default false); for "llama" also scores (one float per
  /// token) and add_space_prefix (default true), with llama.cpp's defaults when keys are
  /// absent: add_bos_token true, unknown 0, bos 1, eos 2. `errc::invalid_argument` for a
  /// tokenizer model or pre-tokenizer this runtime does not support (the message names it and
  /// what is supported); `errc::corrupt_data` for inconsistent metadata (an id out of range, a
  /// merge naming text that is not a token, duplicate tokens, arrays of different lengths, a
  /// score that is not a finite float); `errc::not_found` when tokens, merges ("gpt2") or
  /// scores ("llama") are missing.
  [[nodiscard]] static result<tokenizer> from_gguf(const gguf::file& f);

  /// Token ids of `text`. With `parse_special`, control and unknown-type tokens that occur in the
  /// text verbatim (e.g. `<|im_start|>`) become their ids, longest token text first;
  /// user-defined tokens are matched whether or not `parse_special` is set (as in llama.cpp).
  /// Never adds BOS: a caller prepends `bos()` when `add_bos()` says so.
  [[nodiscard]] std::vector<std::int32_t> encode(std::string_view text, bool parse_special) const;

  /// The bytes `ids` stand for, concatenated. Control and unknown-type tokens render as their
  /// text only when `render_special`; ids out of range, unused and undefined tokens render as
  /// nothing. With `add_space_prefix()`, one leading space of the first id's piece is dropped
  /// (the space encoding put before the text; llama.cpp's detokenize does the same whatever
  /// the first token is), so `decode(encode(x)) == x`. The result is not necessarily valid
  /// UTF-8 (a token may end inside a character); use `stream_decoder` to emit text
  /// incrementally.
  [[nodiscard]] std::string decode(std::span<const std::int32_t> ids,
                                   bool render_special = false) const;

  /// The bytes one token contributes to `decode`'s output ("▁the" gives " the"; only `decode`
  /// drops a first token's leading space). The view lives as long as any copy of this
  /// tokenizer.
  std::string_view piece(std::int32_t id, bool render_special = false) const noexcept;

  /// The token's text as stored in the vocabulary (byte-level spelling, e.g. "Ġthe", or
  /// SentencePiece's, "▁the"); empty for an id out of range. The view lives as long as any copy
  /// of this tokenizer.
  std::string_view token_text(std::int32_t id) const noexcept;

  /// The id whose vocabulary text is exactly `text` (as stored); nullopt when none.
  std::optional<std::int32_t> token_id(std::string_view text) const;

  /// The kind of token `id`; `token_kind::undefined` for an id out of range.
  token_kind kind(std::int32_t id) const noexcept;

  /// Size of the vocabulary; valid ids are [0, num_tokens()).
  std::size_t num_tokens() const noexcept;
  /// Number of merge rules ("gpt2"; 0 for "llama", which merges by scores).
  std::size_t num_merges() const noexcept;

  /// Beginning-of-sequence token, when the file names one.
  std::optional<std::int32_t> bos() const noexcept;
  /// End-of-sequence token, when the file names one.
  std::optional<std::int32_t> eos() const noexcept;
  /// Unknown-token id, when the file names one (or "llama"'s default 0). Besides its own text
  /// under `parse_special`, encoding emits it only for text no token covers in a "llama"
  /// vocabulary without byte tokens.
  std::optional<std::int32_t> unknown() const noexcept;
  /// Padding token, when the file names one.
  std::optional<std::int32_t> padding() const noexcept;
  /// Whether prompts should start with `bos()` (`tokenizer.ggml.add_bos_token`; default false
  /// for "gpt2", true for "llama").
  bool add_bos() const noexcept;

  /// True when generating `id` ends the turn, by llama.cpp's rules: the eos, eot and eom ids of
  /// the file; every token whose text llama.cpp lists (`<|endoftext|>`, `<|im_end|>`,
  /// `<|eot_id|>`, `</s>`, `<end_of_turn>`, ...); and the fill-in-the-middle pad, repository
  /// and file-separator tokens, named by the file or found by text. SmolLM2: 0 `<|endoftext|>`,
  /// 2 `<|im_end|>` and 4 `<reponame>`.
  bool is_end_of_generation(std::int32_t id) const noexcept;

  /// The `tokenizer.ggml.pre` name in use ("default" when the file names none, and for "llama",
  /// which splits no text before merging).
  const std::string& pre_tokenizer_name() const noexcept;

  /// The `tokenizer.ggml.model` name: "gpt2" or "llama".
  const std::string& model_name() const noexcept;

  /// Whether encoding puts a space before text that starts the input or follows a special
  /// token, and `decode` drops the first token's leading space ("llama" with
  /// `tokenizer.ggml.add_space_prefix`, default true; always false for "gpt2").
  bool add_space_prefix() const noexcept;

private:
  struct impl;
  explicit tokenizer(std::shared_ptr<const impl> state) : impl_(std::move(state)) {}
  std::shared_ptr<const impl> impl_;
};

} // namespace aeg::models
