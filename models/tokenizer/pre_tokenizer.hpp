#pragma once

#include "coro/error.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace aeg::models {

/// Splits text into the pieces that byte-level BPE then encodes one by one (BPE never merges
/// across pieces). Each `tokenizer.ggml.pre` name selects the list of regular expressions
/// llama.cpp applies for it: every expression runs on each fragment the previous one left, and
/// both the matches and the text between them become fragments (a lookahead never sees past the
/// end of its fragment). The expressions run on PCRE2 with Unicode properties.
///
/// Supported sets (and the names that select them):
/// - smollm: `\p{N}` (every digit alone), then the GPT-2 expression
///   (smollm, starcoder, refact, command-r, codeshell, exaone, minerva-7b, mellum2);
/// - gpt2: the GPT-2 expression only (gpt2, gpt-2, phi-2, mpt, olmo, jais, ...);
/// - llama3: Llama 3's expression, digits in runs of up to three (llama3, llama-v3, llama-bpe,
///   falcon3, pixtral);
/// - qwen2: the same expression with every digit alone (qwen2, deepseek-r1-qwen, megrez);
/// - falcon and default (also an empty name): llama.cpp's punctuation, GPT-2 and digit-group lists.
///
/// The GPT-2 expression is `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|
/// \s+(?!\S)|\s+`, which llama.cpp runs through a hand-written splitter; here `\s` is spelled out
/// as that splitter's set, the Unicode White_Space property.
/// Bytes that are not well-formed UTF-8 split as U+FFFD would (llama.cpp replaces them so), but
/// the pieces returned keep the original bytes.
///
/// Immutable after `create`; copies share the compiled expressions and any number of threads
/// may call `split` at once.
class pre_tokenizer {
public:
  /// The pre-tokenizer llama.cpp uses for `name`; `errc::invalid_argument` naming it and the
  /// supported names when it is not one of them.
  [[nodiscard]] static result<pre_tokenizer> create(std::string_view name);

  /// The names `create` accepts, comma separated.
  static std::string supported_names();

  /// Appends the pieces of `text` to `out`, in order; together they are exactly `text`, none is
  /// empty. The views point into `text`.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

  /// The name this pre-tokenizer was created with.
  const std::string& name() const noexcept;

private:
  struct impl;
  explicit pre_tokenizer(std::shared_ptr<const impl> state) : impl_(std::move(state)) {}
  std::shared_ptr<const impl> impl_;
};

} // namespace aeg::models
