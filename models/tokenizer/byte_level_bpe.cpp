#include "models/tokenizer/byte_level_bpe.hpp"

#include "models/tokenizer/byte_level.hpp"
#include "models/tokenizer/utf8.hpp"

#include <algorithm>
#include <limits>
#include <string>

namespace aeg::models {
namespace {

constexpr std::string_view key_merges = "tokenizer.ggml.merges";

constexpr std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
         static_cast<std::uint32_t>(right);
}

} // namespace

result<byte_level_bpe> byte_level_bpe::from_gguf(const gguf::file& f, const token_lookup& id_of) {
  byte_level_bpe bpe;
  if (f.find(key_merges) == nullptr)
    return fail(errc::not_found, "the GGUF file has no tokenizer.ggml.merges, which a 'gpt2' "
                                 "tokenizer needs");
  AEG_TRY_ASSIGN(auto rules, f.get_string_array(key_merges));
  if (rules.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
    return fail(errc::corrupt_data, "tokenizer.ggml.merges has too many entries");
  bpe.num_merges_ = rules.size();
  bpe.merges_.reserve(rules.size());
  std::string joined;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const std::string& m = rules[i];
    const auto bad = [&](const std::string& why) {
      return fail(errc::corrupt_data,
                  "tokenizer.ggml.merges[" + std::to_string(i) + "] " + quoted(m) + " " + why);
    };
    // Split at the first space after position 0, so that a half may itself be a space.
    const std::size_t space = m.find(' ', 1);
    if (space == std::string::npos)
      return bad("has no space between its two halves");
    const std::string_view left = std::string_view(m).substr(0, space);
    const std::string_view right = std::string_view(m).substr(space + 1);
    const auto l = id_of(left);
    if (!l)
      return bad("names " + quoted(left) + ", which is not a token");
    const auto r = id_of(right);
    if (!r)
      return bad("names " + quoted(right) + ", which is not a token");
    joined.assign(left);
    joined.append(right);
    const auto made = id_of(joined);
    if (!made)
      return bad("makes " + quoted(joined) + ", which is not a token");
    // The first rule for a pair wins, as in llama.cpp's bpe_ranks.emplace.
    bpe.merges_.emplace(pair_key(*l, *r), merge_rule{static_cast<std::int32_t>(i), *made});
  }

  for (unsigned b = 0; b < 256; ++b) {
    std::string spelled;
    utf8::append(spelled, byte_level::to_code_point(static_cast<std::uint8_t>(b)));
    bpe.byte_tokens_[b] = id_of(spelled).value_or(-1);
  }
  return bpe;
}

void byte_level_bpe::push_bigram(std::int32_t left, std::int32_t right, scratch& work) const {
  const auto& symbols = work.symbols;
  auto& heap = work.heap;
  if (left < 0 || right < 0)
    return;
  const std::int32_t a = symbols[static_cast<std::size_t>(left)].id;
  const std::int32_t b = symbols[static_cast<std::size_t>(right)].id;
  if (a < 0 || b < 0)
    return;
  const auto it = merges_.find(pair_key(a, b));
  if (it == merges_.end())
    return;
  heap.push_back(bigram{it->second.rank, left, right, a, b, it->second.result});
  std::push_heap(heap.begin(), heap.end(), bigram_after{});
}

void byte_level_bpe::encode(std::string_view piece, scratch& work,
                            std::vector<std::int32_t>& out) const {
  auto& symbols = work.symbols;
  auto& heap = work.heap;
  if (piece.size() == 1) {
    const std::int32_t id = byte_tokens_[static_cast<unsigned char>(piece[0])];
    if (id >= 0)
      out.push_back(id);
    return;
  }
  // One symbol per byte (one byte-level character each), then merge the best pair until no
  // pair has a rule: O(n log n) in the piece length.
  symbols.clear();
  heap.clear();
  const auto count = static_cast<std::int32_t>(piece.size());
  for (std::int32_t i = 0; i < count; ++i)
    symbols.push_back(
        symbol{byte_tokens_[static_cast<unsigned char>(piece[static_cast<std::size_t>(i)])], i - 1,
               i + 1 < count ? i + 1 : -1, true});
  for (std::int32_t i = 1; i < count; ++i)
    push_bigram(i - 1, i, work);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), bigram_after{});
    const bigram top = heap.back();
    heap.pop_back();
    symbol& left = symbols[static_cast<std::size_t>(top.left)];
    symbol& right = symbols[static_cast<std::size_t>(top.right)];
    // Stale when either side has since been merged: symbols only grow, so equal ids mean
    // equal text, which is llama.cpp's test.
    if (!left.alive || !right.alive || left.next != top.right || left.id != top.left_id ||
        right.id != top.right_id)
      continue;
    left.id = top.result;
    left.next = right.next;
    right.alive = false;
    if (right.next >= 0)
      symbols[static_cast<std::size_t>(right.next)].prev = top.left;
    push_bigram(left.prev, top.left, work);
    push_bigram(top.left, left.next, work);
  }

  for (std::int32_t i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next)
    if (symbols[static_cast<std::size_t>(i)].id >= 0)
      out.push_back(symbols[static_cast<std::size_t>(i)].id);
}

std::string quoted(std::string_view s) {
  constexpr std::size_t max = 60;
  std::string out = "'";
  out.append(s.substr(0, max));
  if (s.size() > max)
    out += "...";
  out += "'";
  return out;
}

} // namespace aeg::models
