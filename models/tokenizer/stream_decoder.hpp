#pragma once

#include "models/tokenizer/tokenizer.hpp"

#include <cstdint>
#include <string>

namespace aeg::models {

/// Turns generated token ids, fed one at a time, into text that is always well-formed UTF-8: a
/// character whose bytes span several tokens is held back until its last byte arrives, and
/// `finish()` flushes what is left. Bytes that cannot be part of a well-formed character are
/// emitted as U+FFFD, one per byte, as soon as that is certain. For ids whose bytes are
/// well-formed UTF-8 the concatenation of everything emitted equals `tokenizer::decode` of all
/// of them, but for one thing: with `tokenizer::add_space_prefix()` (SentencePiece), `decode`
/// drops the leading space of the first token, which the stream keeps, because a generated
/// answer continues its prompt (" Paris" after "The capital of France is"), as llama.cpp's
/// server streams it.
///
/// One decoder per generated sequence; not thread-safe. It holds a copy of the tokenizer
/// (shared, immutable state), so it may outlive the object it was made from.
class stream_decoder {
public:
  /// A decoder for `tok`'s ids; control tokens render as their text only if `render_special`.
  explicit stream_decoder(tokenizer tok, bool render_special = false);

  /// Adds one token and returns the text that is now complete (often empty or one piece).
  [[nodiscard]] std::string feed(std::int32_t id);

  /// Returns what is still held back, each byte of an unfinished character as U+FFFD, and
  /// resets the decoder for a new sequence.
  [[nodiscard]] std::string finish();

  /// Bytes held back waiting for the rest of a character (0 to 3).
  std::size_t num_pending_bytes() const noexcept { return pending_.size(); }

private:
  // Moves every complete (or certainly broken) character from pending_ to the result.
  std::string drain(bool at_end);

  tokenizer tok_;
  bool render_special_;
  std::string pending_;
};

} // namespace aeg::models
