#pragma once

// A hand-made byte-level BPE vocabulary in GGUF form, small enough to reason about in tests.

#include "models/gguf/writer.hpp"
#include "models/tokenizer/byte_level.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace aeg::models::testing {

/// The metadata of a tiny tokenizer; tests change fields to make it malformed.
struct tiny_vocab {
  // ids 0-2: control tokens; 3-258: one token per byte, in byte order; then merge results.
  std::vector<std::string> tokens;
  std::vector<std::int32_t> types;
  std::vector<std::string> merges;
  std::string model = "gpt2";
  std::string pre = "smollm";
  std::uint32_t bos = 1;
  std::uint32_t eos = 2;
  bool write_tokens = true;
  bool write_merges = true;
  bool write_model = true;

  tiny_vocab() {
    tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    types = {3, 3, 3};
    for (unsigned b = 0; b < 256; ++b) {
      tokens.push_back(byte_level::encode(std::string(1, static_cast<char>(b))));
      types.push_back(1);
    }
    merges = {"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"};
    for (const auto& m : merges) {
      const auto cut = m.find(' ', 1);
      tokens.push_back(m.substr(0, cut) + m.substr(cut + 1));
      types.push_back(1);
    }
  }

  /// Id of a token by its text (byte-level spelling); -1 when absent.
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
    if (write_model)
      w.add_string("tokenizer.ggml.model", model);
    w.add_string("tokenizer.ggml.pre", pre);
    if (write_tokens)
      w.add_string_array("tokenizer.ggml.tokens", tokens);
    w.add_int32_array("tokenizer.ggml.token_type", types);
    if (write_merges)
      w.add_string_array("tokenizer.ggml.merges", merges);
    w.add_uint32("tokenizer.ggml.bos_token_id", bos);
    w.add_uint32("tokenizer.ggml.eos_token_id", eos);
    w.add_bool("tokenizer.ggml.add_bos_token", false);
    return w.bytes();
  }
};

} // namespace aeg::models::testing
