#pragma once

#include "coro/error.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace aeg::models::hf {

/// The fields of a SentencePiece `ModelProto` (a folder's `tokenizer.model`) that tokenizing
/// needs, read from the protobuf wire format by a small reader of our own (field numbers from
/// sentencepiece_model.proto). Fields this runtime does not use are skipped by their wire type;
/// a fault of the wire format itself (a varint cut short or over 10 bytes, a length past the end
/// of its message, a known field of the wrong wire type, a wire type protobuf does not define)
/// is `errc::corrupt_data` naming the file, the byte offset and the field. Defaults are
/// protobuf's for absent fields, as sentencepiece_model.proto declares them.
struct sentencepiece_proto {
  /// `TrainerSpec.ModelType`.
  enum class model_kind : std::int32_t { unigram = 1, bpe = 2, word = 3, character = 4 };

  /// One vocabulary entry (`ModelProto.SentencePiece`).
  struct piece {
    std::string text; ///< spaces spelled "▁" (U+2581); byte pieces "<0xXX>"
    float score = 0;
    /// `SentencePiece.Type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte;
    /// the numbers GGUF's `tokenizer.ggml.token_type` uses too.
    std::int32_t type = 1;
  };

  std::vector<piece> pieces; ///< in id order; never empty after `parse`

  /// trainer_spec.model_type: how pieces are chosen when encoding.
  model_kind model_type = model_kind::unigram;
  /// trainer_spec.byte_fallback: text no piece covers becomes `<0xXX>` byte pieces.
  bool byte_fallback = false;
  /// trainer_spec.treat_whitespace_as_suffix: "▁" ends words instead of starting them.
  bool treat_whitespace_as_suffix = false;
  /// trainer_spec's special pieces; -1 where the model has none.
  std::int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;

  /// normalizer_spec.name: "identity", "nmt_nfkc", ...; empty when unset.
  std::string normalizer_name;
  /// Size of normalizer_spec.precompiled_charsmap: a non-empty map rewrites text before encoding.
  std::size_t precompiled_charsmap_bytes = 0;
  /// normalizer_spec.add_dummy_prefix: a "▁" goes before the text.
  bool add_dummy_prefix = true;
  /// normalizer_spec.remove_extra_whitespaces: leading, trailing and repeated spaces are folded.
  bool remove_extra_whitespaces = true;
  /// normalizer_spec.escape_whitespaces: spaces are spelled "▁".
  bool escape_whitespaces = true;

  /// Parses a serialized `ModelProto`; errors begin with `name` (the file's path).
  [[nodiscard]] static result<sentencepiece_proto> parse(std::span<const std::byte> bytes,
                                                         const std::string& name);
  /// Reads and parses the file at `path`; `errc::not_found` when it cannot be read.
  [[nodiscard]] static result<sentencepiece_proto> read(const std::string& path);

  /// The name sentencepiece gives `kind` ("unigram", "bpe", "word", "char").
  static std::string kind_name(model_kind kind);
};

} // namespace aeg::models::hf
