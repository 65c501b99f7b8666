// The SentencePiece ("llama") tokenizer on a hand-made vocabulary: merge order by score, the
// space prefix, byte fallback, special tokens, decoding, and malformed metadata.

#include "models/gguf/file.hpp"
#include "models/tokenizer/stream_decoder.hpp"
#include "models/tokenizer/tokenizer.hpp"
#include "tests/models/tiny_spm_vocab.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace aeg::models {
namespace {

using testing::tiny_spm_vocab;
using ids = std::vector<std::int32_t>;

// `text` after SentencePiece's space symbol "▁" (U+2581).
std::string spaced(const std::string& text = "") {
  return "\xE2\x96\x81" + text;
}

result<tokenizer> load(const tiny_spm_vocab& v) {
  const std::vector<std::byte> bytes = v.gguf();
  auto f = gguf::file::parse(bytes);
  if (!f)
    return tl::unexpected(f.error());
  return tokenizer::from_gguf(*f); // keeps no reference to the file or its bytes
}

tokenizer tiny(const tiny_spm_vocab& v = tiny_spm_vocab()) {
  auto tok = load(v);
  EXPECT_TRUE(tok) << tok.error().to_string();
  return std::move(*tok);
}

ids of(const tiny_spm_vocab& v, std::initializer_list<std::string> texts) {
  ids out;
  for (const auto& t : texts) {
    out.push_back(v.id(t));
    EXPECT_GE(out.back(), 0) << "no token " << t;
  }
  return out;
}

TEST(SentencePiece, LoadsMetadataWithLlamaCppDefaults) {
  tiny_spm_vocab v;
  v.write_special_ids = false;
  const tokenizer tok = tiny(v);
  EXPECT_EQ(tok.model_name(), "llama");
  EXPECT_EQ(tok.num_tokens(), v.tokens.size());
  EXPECT_EQ(tok.num_merges(), 0u);
  EXPECT_EQ(tok.unknown(), 0); // llama.cpp's defaults when the file names none
  EXPECT_EQ(tok.bos(), 1);
  EXPECT_EQ(tok.eos(), 2);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_TRUE(tok.add_space_prefix());
  EXPECT_EQ(tok.pre_tokenizer_name(), "default");
  EXPECT_EQ(tok.kind(0), token_kind::unknown);
  EXPECT_EQ(tok.kind(1), token_kind::control);
  EXPECT_EQ(tok.kind(v.id("<0x41>")), token_kind::byte);
  EXPECT_EQ(tok.kind(v.id("mn")), token_kind::unused);
  EXPECT_EQ(tok.kind(v.id("<|user|>")), token_kind::user_defined);
  EXPECT_EQ(tok.kind(v.id(spaced("hello"))), token_kind::normal);
  EXPECT_TRUE(tok.is_end_of_generation(2));
  EXPECT_FALSE(tok.is_end_of_generation(1));
}

TEST(SentencePiece, FileFlagsOverrideTheDefaults) {
  tiny_spm_vocab v;
  v.add_bos = false;
  v.add_space_prefix = false;
  const tokenizer tok = tiny(v);
  EXPECT_FALSE(tok.add_bos());
  EXPECT_FALSE(tok.add_space_prefix());
}

TEST(SentencePiece, MergesByHighestScore) {
  tiny_spm_vocab v;
  const tokenizer tok = tiny(v);
  // h e l l o -> he l l o -> he ll o -> hell o -> hello, then "▁" + "hello".
  EXPECT_EQ(tok.encode("hello world", false), of(v, {spaced("hello"), spaced("world")}));
  // "▁hell" is no token: the merges stop at "hell".
  EXPECT_EQ(tok.encode("hell", false), of(v, {spaced(), "hell"}));
  // "yz" (-14) outscores "xy" (-20) although it is to the right.
  EXPECT_EQ(tok.encode("xyz", false), of(v, {spaced(), "x", "yz"}));
  EXPECT_EQ(tok.encode("xy", false), of(v, {spaced(), "xy"}));
}

TEST(SentencePiece, EqualScoresMergeTheLeftmostPair) {
  tiny_spm_vocab v;
  const tokenizer tok = tiny(v);
  EXPECT_EQ(tok.encode("abc", false), of(v, {spaced(), "ab", "c"}));
  EXPECT_EQ(tok.encode("bcab", false), of(v, {spaced(), "bc", "ab"}));
}

TEST(SentencePiece, SpacesBecomeTheSpaceSymbolAndTextGetsAPrefix) {
  tiny_spm_vocab v;
  const tokenizer tok = tiny(v);
  EXPECT_EQ(tok.encode("hello", false), of(v, {spaced("hello")}));
  // "▁hello" (-5) beats "▁▁" (-15) for the second space.
  EXPECT_EQ(tok.encode(" hello", false), of(v, {spaced(), spaced("hello")}));
  EXPECT_EQ(tok.encode("  ", false), of(v, {spaced(spaced()), spaced()}));
  EXPECT_EQ(tok.encode("", false), ids{});
  EXPECT_EQ(tok.decode(tok.encode(" hello", false)), " hello");

  tiny_spm_vocab no_prefix;
  no_prefix.add_space_prefix = false;
  const tokenizer bare = tiny(no_prefix);
  EXPECT_EQ(bare.encode("hello world", false), of(v, {"hello", spaced("world")}));
  EXPECT_EQ(bare.decode(of(v, {spaced("hello")})), " hello"); // nothing to drop
}

TEST(SentencePiece, DecodeDropsOnlyTheFirstTokensLeadingSpace) {
  tiny_spm_vocab v;
  const tokenizer tok = tiny(v);
  EXPECT_EQ(tok.decode(of(v, {spaced("hello"), spaced("world")})), "hello world");
  EXPECT_EQ(tok.piece(v.id(spaced("hello"))), " hello"); // pieces keep it
  // As llama.cpp's detokenize: the first token is BOS (rendering nothing), so the space stays.
  EXPECT_EQ(tok.decode(ids{1, v.id(spaced("hello"))}), " hello");
  EXPECT_EQ(tok.decode(ids{1, v.id(spaced("hello"))}, true), "<s> hello");
}

TEST(SentencePiece, StreamingKeepsTheSpaceOfAnAnswersFirstToken) {
  // An answer continues its prompt ("The capital of France is" + " Paris"), so the streamed
  // text keeps the leading space that `decode` of a whole text drops, as llama.cpp's server.
  tiny_spm_vocab v;
  const tokenizer tok = tiny(v);
  stream_decoder dec(tok);
  std::string out = dec.feed(v.id(spaced("hello")));
  out += dec.feed(v.id(spaced("world")));
  out += dec.finish();
  EXPECT_EQ(out, " hello world");
}

TEST(SentencePiece, BytesWithoutATokenFallBackToByteTokens) {
  tiny_spm_vocab v;
  const tokenizer tok = tiny(v);
  EXPECT_EQ(tok.encode("q", false), of(v, {spaced(), "<0x71>"}));
  EXPECT_EQ(tok.encode("\xC3\xA9", false), of(v, {spaced(), "<0xC3>", "<0xA9>"})); // é: no token
  EXPECT_EQ(tok.encode("\xC3\xBC", false), of(v, {spaced(), "\xC3\xBC"}));         // ü: a token
  EXPECT_EQ(tok.encode("\xF0\x9F\x98\x80", false),
            of(v, {spaced(), "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"}));
  EXPECT_EQ(tok.encode("a\nb", false), of(v, {spaced(), "a", "<0x0A>", "b"}));
  EXPECT_EQ(tok.decode(tok.encode("\xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80!", false)),
            "\xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80!");
}

TEST(SentencePiece, IllFormedUtf8RoundTripsThroughByteTokens) {
  const tokenizer tok = tiny();
  for (const std::string& text :
       {std::string("\x80"), std::string("a\xE2\x82"), std::string("\xC3("),
        std::string("x\xF0\x9F\x98y"), std::string("\xFF\xFE"), std::string("nul\0byte", 8)})
    EXPECT_EQ(tok.decode(tok.encode(text, false)), text) << "text: " << text;
}

TEST(SentencePiece, WithoutByteTokensOneUnknownStandsForARun) {
  tiny_spm_vocab v(false);
  const tokenizer tok = tiny(v);
  EXPECT_EQ(tok.encode("qq", false), of(v, {spaced(), "<unk>"}));
  EXPECT_EQ(tok.encode("q\xC3\xA9hq", false), of(v, {spaced(), "<unk>", "h", "<unk>"}));
  EXPECT_EQ(tok.decode(tok.encode("qq", false)), "");
  EXPECT_EQ(tok.decode(tok.encode("qq", false), true), "<unk>");
}

TEST(SentencePiece, SpecialTokensOnlyWhenAsked) {
  tiny_spm_vocab v;
  const tokenizer tok = tiny(v);
  // Each run after a special token gets the space prefix again (llama.cpp's rule).
  EXPECT_EQ(tok.encode("<s>hello</s>", true), (ids{1, v.id(spaced("hello")), 2}));
  EXPECT_EQ(tok.encode("</s></s>", true), (ids{2, 2}));
  EXPECT_EQ(tok.encode("hello<s>world", true),
            (ids{v.id(spaced("hello")), 1, v.id(spaced("world"))}));
  EXPECT_EQ(tok.decode(tok.encode("<s>hello</s>", true), true), "<s> hello</s>");

  // Without parse_special the text stays text: "</s" and ">" do not merge into the control
  // token </s>, although the text is in the vocabulary (llama.cpp would make it </s>).
  EXPECT_EQ(tok.encode("</s>", false), of(v, {spaced(), "</s", ">"}));
  EXPECT_EQ(tok.decode(tok.encode("<s>hello</s>", false)), "<s>hello</s>");
  for (std::int32_t id : tok.encode("<s><unk></s>", false))
    EXPECT_NE(tok.kind(id), token_kind::control);
}

TEST(SentencePiece, UserDefinedTokensAreAlwaysMatched) {
  tiny_spm_vocab v;
  const tokenizer tok = tiny(v);
  const ids want{v.id("<|user|>"), v.id(spaced("hello"))};
  EXPECT_EQ(tok.encode("<|user|>hello", false), want);
  EXPECT_EQ(tok.encode("<|user|>hello", true), want);
  EXPECT_EQ(tok.decode(want), "<|user|> hello");
}

TEST(SentencePiece, UnusedTokensAreSplitAgain) {
  tiny_spm_vocab v;
  const tokenizer tok = tiny(v);
  // "mn" merges first (-0.5) but is unused: SentencePiece emits the two symbols that made it.
  EXPECT_EQ(tok.encode("mn", false), of(v, {spaced(), "m", "n"}));
  // As a step towards a normal token it stays.
  EXPECT_EQ(tok.encode("mnm", false), of(v, {spaced(), "mnm"}));
}

TEST(SentencePiece, RoundTripsText) {
  const tokenizer tok = tiny();
  for (const std::string text :
       {"", " ", "   ", "hello world", " leading", "trailing  ", "hello   world", "a\nb\tc\r\n",
        "Caf\xC3\xA9 \xC3\xBC"
        "ber na\xC3\xAFve",
        "\xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97\xE7\xAC\xA6",
        "emoji \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD "
        "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",
        "<s>hello</s>", "xyz abc mnm mn"}) {
    EXPECT_EQ(tok.decode(tok.encode(text, false)), text) << "text: " << text;
    // Through a stream too, after the first token's space is dropped as decode does.
    const ids got = tok.encode(text, false);
    stream_decoder dec(tok);
    std::string streamed;
    for (std::int32_t id : got)
      streamed += dec.feed(id);
    streamed += dec.finish();
    EXPECT_EQ(streamed, std::string(text.empty() ? "" : " ") + text) << "text: " << text;
  }
}

// A guard against quadratic behaviour, not a benchmark: the limits are far above what this
// takes on a slow machine.
TEST(SentencePiece, LongInputsStayFast) {
  const tokenizer tok = tiny();
  for (const std::string& text :
       {std::string(100'000, ' '), std::string(100'000, 'l'), std::string(100'000, 'q')}) {
    const auto start = std::chrono::steady_clock::now();
    const ids got = tok.encode(text, false);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("[ info ] %zu bytes -> %zu tokens in %.3f s\n", text.size(), got.size(), secs);
    EXPECT_EQ(tok.decode(got), text);
    EXPECT_LT(secs, 5.0);
  }
}

void expect_error(const tiny_spm_vocab& v, errc code, const std::string& needle) {
  auto tok = load(v);
  ASSERT_FALSE(tok) << "loaded a tokenizer that should have been rejected";
  EXPECT_EQ(tok.error().code, code) << tok.error().to_string();
  EXPECT_NE(tok.error().message.find(needle), std::string::npos) << tok.error().to_string();
}

TEST(SentencePieceMalformed, MissingScoresAreNamed) {
  tiny_spm_vocab v;
  v.write_scores = false;
  expect_error(v, errc::not_found, "tokenizer.ggml.scores");
  expect_error(v, errc::not_found, "convert");
}

TEST(SentencePieceMalformed, ScoreCountDiffers) {
  tiny_spm_vocab v;
  v.scores.pop_back();
  expect_error(v, errc::corrupt_data,
               "tokenizer.ggml.scores has " + std::to_string(v.scores.size()) + " entries for " +
                   std::to_string(v.tokens.size()) + " tokens");
}

TEST(SentencePieceMalformed, ScoreNotFinite) {
  tiny_spm_vocab v;
  v.scores[300] = std::numeric_limits<float>::quiet_NaN();
  expect_error(v, errc::corrupt_data, "tokenizer.ggml.scores[300]");
  v.scores[300] = std::numeric_limits<float>::infinity();
  expect_error(v, errc::corrupt_data, "finite");
}

TEST(SentencePieceMalformed, ScoresOfTheWrongType) {
  const tiny_spm_vocab v;
  gguf::writer w;
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_string_array("tokenizer.ggml.tokens", v.tokens);
  w.add_int32_array("tokenizer.ggml.scores", v.types); // integers, not floats
  const std::vector<std::byte> bytes = w.bytes();
  auto f = gguf::file::parse(bytes);
  ASSERT_TRUE(f) << f.error().to_string();
  auto tok = tokenizer::from_gguf(*f);
  ASSERT_FALSE(tok);
  EXPECT_EQ(tok.error().code, errc::corrupt_data);
  EXPECT_NE(tok.error().message.find("not an array of floats"), std::string::npos)
      << tok.error().to_string();
}

} // namespace
} // namespace aeg::models
