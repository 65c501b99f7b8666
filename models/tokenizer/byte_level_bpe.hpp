#pragma once

#include "coro/error.hpp"
#include "models/gguf/file.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace aeg::models {

/// `s` in single quotes, cut after 60 bytes ("..."): token texts in error messages.
std::string quoted(std::string_view s);

/// The merge step of a GPT-2-style byte-level BPE vocabulary (`tokenizer.ggml.model = "gpt2"`):
/// the ranked merge rules of `tokenizer.ggml.merges` and the token of each byte. Internal to
/// `tokenizer`, which cuts special tokens out and pre-tokenizes first, then hands each piece to
/// `encode`. Immutable after `from_gguf`; any number of threads may encode at once, each with
/// its own `scratch`.
class byte_level_bpe {
public:
  /// The id of a token text, if the vocabulary has it.
  using token_lookup = std::function<std::optional<std::int32_t>(std::string_view)>;

  /// Reads the merges of `f` for the vocabulary `id_of` answers for; `errc::not_found` without
  /// them, `errc::corrupt_data` naming a rule whose halves or result are no tokens.
  [[nodiscard]] static result<byte_level_bpe> from_gguf(const gguf::file& f,
                                                        const token_lookup& id_of);

  /// Buffers `encode` reuses from piece to piece.
  struct scratch;

  /// Appends the ids of one pre-tokenized piece: one symbol per byte, then the best-ranked pair
  /// merged until no pair has a rule (O(n log n) in the piece's length).
  void encode(std::string_view piece, scratch& work, std::vector<std::int32_t>& out) const;

  /// The token of byte `b` (its byte-level spelling), or -1.
  std::int32_t byte_token(unsigned char b) const noexcept { return byte_tokens_[b]; }
  std::size_t num_merges() const noexcept { return num_merges_; }

private:
  struct merge_rule {
    std::int32_t rank;
    std::int32_t result;
  };

  void push_bigram(std::int32_t left, std::int32_t right, scratch& work) const;

  std::unordered_map<std::uint64_t, merge_rule> merges_;
  std::size_t num_merges_ = 0;
  std::array<std::int32_t, 256> byte_tokens_{};

public:
  // A symbol of the word being merged; `id` is -1 for a byte the vocabulary has no token for.
  struct symbol {
    std::int32_t id;
    std::int32_t prev;
    std::int32_t next;
    bool alive;
  };

  // A candidate merge of symbols[left] and symbols[right], valid while both still hold these ids.
  struct bigram {
    std::int32_t rank;
    std::int32_t left;
    std::int32_t right;
    std::int32_t left_id;
    std::int32_t right_id;
    std::int32_t result;
  };

  // std::push_heap keeps the greatest on top: lowest rank first, then leftmost (llama.cpp order).
  struct bigram_after {
    bool operator()(const bigram& a, const bigram& b) const noexcept {
      return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
  };

  struct scratch {
    std::vector<symbol> symbols;
    std::vector<bigram> heap;
  };
};

} // namespace aeg::models
