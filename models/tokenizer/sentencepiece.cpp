#include "models/tokenizer/sentencepiece.hpp"

#include "coro/assert.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <utility>

namespace aeg::models {
namespace {

constexpr std::string_view key_scores = "tokenizer.ggml.scores";
constexpr std::string_view key_add_space_prefix = "tokenizer.ggml.add_space_prefix";

// U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's spelling of a space inside tokens.
constexpr std::string_view space_symbol = "\xE2\x96\x81";

// Bytes of the character a lead byte starts, by its high four bits, as llama.cpp counts them:
// a continuation byte stands alone, and a sequence is not checked for well-formedness.
constexpr std::array<std::uint8_t, 16> char_length = {1, 1, 1, 1, 1, 1, 1, 1,
                                                      1, 1, 1, 1, 2, 2, 3, 4};

// A symbol of the run being merged: bytes [begin, begin + size) of the escaped text, size 0
// once it has been merged into its left neighbour.
struct symbol {
  std::size_t begin;
  std::size_t size;
  std::int32_t prev;
  std::int32_t next;
};

// A candidate merge of symbols[left] and symbols[right] into a token of `score`, valid while
// both still span the `size` bytes they spanned when it was made.
struct bigram {
  float score;
  std::int32_t left;
  std::int32_t right;
  std::size_t size;
};

// std::push_heap keeps the greatest on top: highest score first, then leftmost (llama.cpp's and
// SentencePiece's order).
struct bigram_before {
  bool operator()(const bigram& a, const bigram& b) const noexcept {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

std::string byte_token_text(unsigned b) {
  constexpr std::string_view hex = "0123456789ABCDEF";
  return std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
}

} // namespace

// The state of one `encode` call.
struct sentencepiece::session {
  const sentencepiece& model;
  std::vector<std::int32_t>& out;
  std::string text;
  std::vector<symbol> symbols;
  std::vector<bigram> heap;
  // How each unused token a candidate merge would make was made, by its text (the latest
  // candidate wins, as in SentencePiece), to split it again at the end.
  std::map<std::string, std::pair<std::string, std::string>, std::less<>> unused_splits;
  bool after_unknown = false; // the last id emitted stands for text no token covers

  std::string_view text_of(std::int32_t i) const {
    const symbol& s = symbols[static_cast<std::size_t>(i)];
    return std::string_view(text).substr(s.begin, s.size);
  }
  void push_bigram(std::int32_t left, std::int32_t right);
  void merge();
  void emit(std::string_view piece);
};

result<sentencepiece> sentencepiece::from_gguf(const gguf::file& f,
                                               std::span<const std::string> texts,
                                               std::span<const token_kind> kinds,
                                               std::optional<std::int32_t> unknown) {
  AEG_ASSERT(texts.size() == kinds.size(), "one kind per token");
  const std::size_t n = texts.size();
  const gguf::value* scores = f.find(key_scores);
  if (scores == nullptr)
    return fail(errc::not_found,
                "the GGUF file has no tokenizer.ggml.scores, which a 'llama' (SentencePiece) "
                "tokenizer needs to choose its merges; convert the model again with llama.cpp's "
                "convert_hf_to_gguf.py, from a model directory that has its tokenizer.model");
  if (scores->type != gguf::value_type::array || (scores->elem_type != gguf::value_type::float32 &&
                                                  scores->elem_type != gguf::value_type::float64))
    return fail(errc::corrupt_data,
                "tokenizer.ggml.scores is not an array of floats; it must hold one float32 score "
                "per token: convert the model again");
  if (scores->items.size() != n)
    return fail(errc::corrupt_data, "tokenizer.ggml.scores has " +
                                        std::to_string(scores->items.size()) + " entries for " +
                                        std::to_string(n) +
                                        " tokens (tokenizer.ggml.tokens); they must be equal: "
                                        "the file is damaged or was converted wrongly");

  sentencepiece model;
  model.tokens_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double score = scores->items[i].f;
    if (!std::isfinite(score) || std::abs(score) > std::numeric_limits<float>::max())
      return fail(errc::corrupt_data, "tokenizer.ggml.scores[" + std::to_string(i) +
                                          "] is not a finite float32; the file is damaged");
    const token_kind k = kinds[i];
    model.tokens_.emplace(
        texts[i],
        entry{static_cast<std::int32_t>(i), static_cast<float>(score),
              k == token_kind::normal || k == token_kind::user_defined || k == token_kind::unused,
              k == token_kind::unused});
  }

  // Byte fallback: "<0xXX>", else the byte itself as a token (llama.cpp's order).
  for (unsigned b = 0; b < 256; ++b) {
    auto it = model.tokens_.find(byte_token_text(b));
    if (it == model.tokens_.end())
      it = model.tokens_.find(std::string(1, static_cast<char>(b)));
    model.byte_tokens_[b] = it == model.tokens_.end() ? -1 : it->second.id;
  }
  model.unknown_ = unknown;

  if (const gguf::value* v = f.find(key_add_space_prefix)) {
    if (v->type == gguf::value_type::boolean || v->is_unsigned())
      model.add_space_prefix_ = v->u != 0;
    else if (v->is_integer())
      model.add_space_prefix_ = v->i != 0;
    else
      return fail(errc::corrupt_data, "tokenizer.ggml.add_space_prefix is not a boolean");
  }
  return model;
}

std::string sentencepiece::unescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    if (text.substr(i, space_symbol.size()) == space_symbol) {
      out.push_back(' ');
      i += space_symbol.size();
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

void sentencepiece::encode(std::string_view text, bool at_start,
                           std::vector<std::int32_t>& out) const {
  if (text.empty())
    return;
  session s{*this, out, {}, {}, {}, {}, false};
  s.text.reserve(text.size() +
                 2 * static_cast<std::size_t>(std::count(text.begin(), text.end(), ' ')) +
                 space_symbol.size());
  if (at_start && add_space_prefix_)
    s.text.append(space_symbol);
  for (const char c : text) {
    if (c == ' ')
      s.text.append(space_symbol);
    else
      s.text.push_back(c);
  }
  AEG_ASSERT(s.text.size() < static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()),
             "sentencepiece::encode takes less than 2 GiB of text at once");
  s.merge();
}

void sentencepiece::session::push_bigram(std::int32_t left, std::int32_t right) {
  if (left < 0 || right < 0)
    return;
  const symbol& l = symbols[static_cast<std::size_t>(left)];
  const symbol& r = symbols[static_cast<std::size_t>(right)];
  const std::string_view merged = std::string_view(text).substr(l.begin, l.size + r.size);
  const auto it = model.tokens_.find(merged);
  if (it == model.tokens_.end() || !it->second.mergeable)
    return;
  heap.push_back(bigram{it->second.score, left, right, merged.size()});
  std::push_heap(heap.begin(), heap.end(), bigram_before{});
  if (it->second.unused)
    unused_splits.insert_or_assign(
        std::string(merged), std::pair(std::string(text_of(left)), std::string(text_of(right))));
}

void sentencepiece::session::merge() {
  // One symbol per character, then the best pair merges until no pair makes a token:
  // O(n log n) in the length of the run.
  for (std::size_t offset = 0; offset < text.size();) {
    const auto lead = static_cast<unsigned char>(text[offset]);
    const std::size_t size = std::min<std::size_t>(char_length[lead >> 4], text.size() - offset);
    const auto index = static_cast<std::int32_t>(symbols.size());
    offset += size;
    symbols.push_back(
        symbol{offset - size, size, index - 1, offset == text.size() ? -1 : index + 1});
  }
  for (std::int32_t i = 1; i < static_cast<std::int32_t>(symbols.size()); ++i)
    push_bigram(i - 1, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), bigram_before{});
    const bigram top = heap.back();
    heap.pop_back();
    symbol& left = symbols[static_cast<std::size_t>(top.left)];
    symbol& right = symbols[static_cast<std::size_t>(top.right)];
    // Stale when either side has been merged since: a symbol only grows, and only at its
    // right end, so equal sizes mean the pair is unchanged.
    if (left.size == 0 || right.size == 0 || left.size + right.size != top.size)
      continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0)
      symbols[static_cast<std::size_t>(right.next)].prev = top.left;
    push_bigram(left.prev, top.left);
    push_bigram(top.left, left.next);
  }

  for (std::int32_t i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next)
    emit(text_of(i));
}

void sentencepiece::session::emit(std::string_view piece) {
  if (const auto it = model.tokens_.find(piece); it != model.tokens_.end()) {
    if (it->second.unused) {
      if (const auto split = unused_splits.find(piece); split != unused_splits.end()) {
        emit(split->second.first);
        emit(split->second.second);
        return;
      }
    }
    out.push_back(it->second.id);
    after_unknown = false;
    return;
  }
  const bool has_bytes = std::all_of(piece.begin(), piece.end(), [&](char c) {
    return model.byte_tokens_[static_cast<unsigned char>(c)] >= 0;
  });
  if (has_bytes) {
    for (const char c : piece)
      out.push_back(model.byte_tokens_[static_cast<unsigned char>(c)]);
    after_unknown = false;
    return;
  }
  // No token covers it: one unknown token for a run of such symbols, as SentencePiece emits.
  if (model.unknown_ && !after_unknown)
    out.push_back(*model.unknown_);
  after_unknown = true;
}

} // namespace aeg::models
