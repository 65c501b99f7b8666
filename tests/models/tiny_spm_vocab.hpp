#pragma once

// A hand-made SentencePiece ("llama") vocabulary in GGUF form, small enough to reason about in
// tests: which pair merges first follows from the scores written here.

#include "models/gguf/writer.hpp"

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace aeg::models::testing {

/// The metadata of a tiny SentencePiece tokenizer; tests change fields to vary or break it.
struct tiny_spm_vocab {
  // ids 0-2: <unk> <s> </s>; 3-258: <0x00>..<0xFF> (unless `with_bytes` is false); then the
  // pieces below, as llama.cpp's converter types them.
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<std::int32_t> types;
  bool write_scores = true;
  std::optional<bool> add_space_prefix; // absent: the default (true)
  std::optional<bool> add_bos;          // absent: the default (true)
  bool write_special_ids = true;

  explicit tiny_spm_vocab(bool with_bytes = true) {
    add("<unk>", 0, 2);
    add("<s>", 0, 3);
    add("</s>", 0, 3);
    if (with_bytes) {
      for (unsigned b = 0; b < 256; ++b) {
        char text[8];
        std::snprintf(text, sizeof text, "<0x%02X>", b);
        add(text, 0, 6);
      }
    }
    // Merge results: the higher the score, the earlier the merge.
    add("he", -1);
    add("ll", -2);
    add("hell", -3);
    add("hello", -4);
    add("\xE2\x96\x81hello", -5); // "▁hello"
    add("\xE2\x96\x81w", -6);
    add("or", -7);
    add("\xE2\x96\x81wor", -8);
    add("ld", -9);
    add("\xE2\x96\x81world", -10);
    add("</", -11);
    add("</s", -12); // one merge away from the control token </s>
    add("ab", -13);
    add("bc", -13); // equal scores: the leftmost pair merges first
    add("xy", -20);
    add("yz", -14);                       // outscores "xy", though to its right
    add("\xE2\x96\x81\xE2\x96\x81", -15); // "▁▁"
    add("mn", -0.5f, 5);                  // unused: split again when it survives
    add("mnm", -0.6f);
    add("<|user|>", 0, 4); // user-defined: always matched whole
    // Single characters: the initial symbols.
    add("\xE2\x96\x81", -50); // "▁"
    float score = -100;
    for (const char* c : {"h", "e", "l", "o", "w", "r", "d", "a", "b", "c", "x",
                          "y", "z", "m", "n", "<", "/", "s", ">", ",", "!", "\xC3\xBC" /* ü */})
      add(c, score--);
  }

  void add(const std::string& text, float score, std::int32_t type = 1) {
    tokens.push_back(text);
    scores.push_back(score);
    types.push_back(type);
  }

  /// Id of a token by its text; -1 when absent.
  std::int32_t id(const std::string& text) const {
    for (std::size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] == text)
        return static_cast<std::int32_t>(i);
    return -1;
  }

  /// The GGUF file bytes.
  std::vector<std::byte> gguf() const {
    gguf::writer w;
    w.add_string("general.architecture", "llama");
    w.add_string("tokenizer.ggml.model", "llama");
    w.add_string_array("tokenizer.ggml.tokens", tokens);
    if (write_scores) {
      gguf::value v;
      v.type = gguf::value_type::array;
      v.elem_type = gguf::value_type::float32;
      for (float s : scores) {
        gguf::value item;
        item.type = gguf::value_type::float32;
        item.f = s;
        v.items.push_back(item);
      }
      w.add_value("tokenizer.ggml.scores", v);
    }
    w.add_int32_array("tokenizer.ggml.token_type", types);
    if (write_special_ids) {
      w.add_uint32("tokenizer.ggml.bos_token_id", 1);
      w.add_uint32("tokenizer.ggml.eos_token_id", 2);
      w.add_uint32("tokenizer.ggml.unknown_token_id", 0);
    }
    if (add_space_prefix)
      w.add_bool("tokenizer.ggml.add_space_prefix", *add_space_prefix);
    if (add_bos)
      w.add_bool("tokenizer.ggml.add_bos_token", *add_bos);
    return w.bytes();
  }
};

} // namespace aeg::models::testing
