// stream_decoder emits only whole UTF-8 characters, whatever the token boundaries.

#include "models/gguf/file.hpp"
#include "models/tokenizer/byte_level.hpp"
#include "models/tokenizer/stream_decoder.hpp"
#include "models/tokenizer/utf8.hpp"
#include "tests/models/smollm2.hpp"
#include "tests/models/tiny_vocab.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace aeg::models {
namespace {

tokenizer tiny() {
  const auto bytes = testing::tiny_vocab().gguf();
  auto f = gguf::file::parse(bytes);
  EXPECT_TRUE(f);
  auto tok = tokenizer::from_gguf(*f);
  EXPECT_TRUE(tok) << tok.error().to_string();
  return std::move(*tok);
}

// Ids of the single-byte tokens spelling `bytes`, so that every byte is its own token.
std::vector<std::int32_t> byte_ids(const tokenizer& tok, std::string_view bytes) {
  std::vector<std::int32_t> ids;
  for (char c : bytes) {
    auto id = tok.token_id(byte_level::encode(std::string_view(&c, 1)));
    EXPECT_TRUE(id) << "no token for byte " << static_cast<int>(static_cast<unsigned char>(c));
    ids.push_back(id.value_or(0));
  }
  return ids;
}

void expect_streams_whole_characters(const tokenizer& tok, const std::vector<std::int32_t>& ids,
                                     bool render_special = false) {
  stream_decoder dec(tok, render_special);
  std::string all;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::string out = dec.feed(ids[i]);
    EXPECT_TRUE(utf8::is_valid(out)) << "partial character emitted after token " << i;
    all += out;
  }
  const std::string rest = dec.finish();
  EXPECT_TRUE(utf8::is_valid(rest));
  all += rest;
  EXPECT_EQ(all, tok.decode(ids, render_special));
  EXPECT_EQ(dec.num_pending_bytes(), 0u);
}

TEST(StreamDecoder, HoldsBackAnEmojiUntilItsLastByte) {
  const tokenizer tok = tiny();
  const std::string emoji = "\xF0\x9F\x98\x80"; // U+1F600
  const auto ids = byte_ids(tok, emoji);
  stream_decoder dec(tok);
  EXPECT_EQ(dec.feed(ids[0]), "");
  EXPECT_EQ(dec.feed(ids[1]), "");
  EXPECT_EQ(dec.feed(ids[2]), "");
  EXPECT_EQ(dec.num_pending_bytes(), 3u);
  EXPECT_EQ(dec.feed(ids[3]), emoji);
  EXPECT_EQ(dec.finish(), "");
}

TEST(StreamDecoder, MixedTextByteByByteConcatenatesToDecode) {
  const tokenizer tok = tiny();
  const std::string text =
      "h\xC3\xA9llo \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD!";
  expect_streams_whole_characters(tok, byte_ids(tok, text));
  expect_streams_whole_characters(tok, tok.encode(text, false));
}

TEST(StreamDecoder, BrokenBytesBecomeReplacementCharacters) {
  const tokenizer tok = tiny();
  stream_decoder dec(tok);
  const auto ids = byte_ids(tok, "a\xFF"
                                 "b\xE2\x82");
  std::string all;
  for (auto id : ids)
    all += dec.feed(id);
  EXPECT_EQ(all, "a\xEF\xBF\xBD"
                 "b"); // 0xFF can never start a character: replaced at once
  EXPECT_EQ(dec.num_pending_bytes(), 2u);
  // An unfinished character at the end is one replacement, as Python's decoder gives, not one
  // per byte.
  EXPECT_EQ(dec.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(dec.num_pending_bytes(), 0u);
  // A lead byte followed by one that cannot continue it: the lead is replaced, the rest kept.
  for (auto id : byte_ids(tok, "\xE2"))
    EXPECT_EQ(dec.feed(id), "");
  for (auto id : byte_ids(tok, "A"))
    EXPECT_EQ(dec.feed(id), "\xEF\xBF\xBD"
                            "A");
  // The same for a well-formed prefix cut short mid-stream: its bytes are one replacement.
  for (auto id : byte_ids(tok, "\xF0\x9F\x98"))
    EXPECT_EQ(dec.feed(id), "");
  for (auto id : byte_ids(tok, "B"))
    EXPECT_EQ(dec.feed(id), "\xEF\xBF\xBD"
                            "B");
}

TEST(StreamDecoder, ControlTokensRenderOnlyWhenAsked) {
  const tokenizer tok = tiny();
  stream_decoder quiet(tok);
  EXPECT_EQ(quiet.feed(2), "");
  stream_decoder loud(tok, true);
  EXPECT_EQ(loud.feed(2), "<|im_end|>");
}

TEST(StreamDecoder, RealVocabularyEmojiAndText) {
  AEG_REQUIRE_SMOLLM2(tok);
  const std::string text =
      "Emoji: \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xF0\x9F\x87\xAB\xF0\x9F\x87\xB7, "
      "CJK \xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97, accents d\xC3\xA9j\xC3\xA0 vu.";
  expect_streams_whole_characters(tok, byte_ids(tok, text));
  expect_streams_whole_characters(tok, tok.encode(text, false));
  // The emoji's four bytes each as their own token.
  const auto ids = byte_ids(tok, "\xF0\x9F\x98\x80");
  stream_decoder dec(tok);
  EXPECT_EQ(dec.feed(ids[0]) + dec.feed(ids[1]) + dec.feed(ids[2]), "");
  EXPECT_EQ(dec.feed(ids[3]), "\xF0\x9F\x98\x80");
}

} // namespace
} // namespace aeg::models
