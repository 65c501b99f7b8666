// A tokenizer built from a hand-made GGUF: merge order, special tokens, bytes, and malformed
// metadata that must give errors, never crashes.

#include "models/gguf/file.hpp"
#include "models/tokenizer/tokenizer.hpp"
#include "tests/models/tiny_vocab.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace aeg::models {
namespace {

using testing::tiny_vocab;

result<tokenizer> load(const tiny_vocab& v) {
  const std::vector<std::byte> bytes = v.gguf();
  auto f = gguf::file::parse(bytes);
  if (!f)
    return tl::unexpected(f.error());
  return tokenizer::from_gguf(*f); // keeps no reference to the file or its bytes
}

std::vector<std::int32_t> ids(const tiny_vocab& v, std::initializer_list<const char*> texts) {
  std::vector<std::int32_t> out;
  for (const char* t : texts)
    out.push_back(v.id(t));
  return out;
}

TEST(TinyVocab, LoadsMetadata) {
  tiny_vocab v;
  auto tok = load(v);
  ASSERT_TRUE(tok) << tok.error().to_string();
  EXPECT_EQ(tok->num_tokens(), v.tokens.size());
  EXPECT_EQ(tok->num_merges(), v.merges.size());
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  EXPECT_EQ(tok->unknown(), std::nullopt);
  EXPECT_FALSE(tok->add_bos());
  EXPECT_EQ(tok->pre_tokenizer_name(), "smollm");
  EXPECT_EQ(tok->kind(1), token_kind::control);
  EXPECT_EQ(tok->kind(v.id("hello")), token_kind::normal);
  EXPECT_EQ(tok->kind(-1), token_kind::undefined);
  EXPECT_EQ(tok->token_text(v.id("Ġworld")), "Ġworld");
  EXPECT_EQ(tok->token_text(100000), "");
  EXPECT_EQ(tok->token_id("Ġworld"), v.id("Ġworld"));
  EXPECT_EQ(tok->token_id("nope"), std::nullopt);
}

TEST(TinyVocab, MergesByRankIntoWords) {
  tiny_vocab v;
  auto tok = load(v);
  ASSERT_TRUE(tok) << tok.error().to_string();
  EXPECT_EQ(tok->encode("hello world", false), ids(v, {"hello", "Ġworld"}));
  EXPECT_EQ(tok->encode("hellohello", false), ids(v, {"hello", "hello"}));
  // "l l" is the only rule for "lll": the leftmost pair merges first.
  EXPECT_EQ(tok->encode("lll", false), ids(v, {"ll", "l"}));
  // "he ll" needs "ll", which outranks nothing here: h e l l -> he l l -> he ll -> hell.
  EXPECT_EQ(tok->encode("hell", false), ids(v, {"hell"}));
  EXPECT_EQ(tok->encode("Hello", false), ids(v, {"H", "e", "ll", "o"}));
  EXPECT_EQ(tok->decode(tok->encode("hello world", false)), "hello world");
}

TEST(TinyVocab, SpecialTokensOnlyWhenAsked) {
  tiny_vocab v;
  auto tok = load(v);
  ASSERT_TRUE(tok) << tok.error().to_string();
  const std::string text = "<|im_start|>hello<|im_end|>";
  EXPECT_EQ(tok->encode(text, true), (std::vector<std::int32_t>{1, v.id("hello"), 2}));
  const auto literal = tok->encode(text, false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 1), 0);
  EXPECT_EQ(tok->decode(literal), text);
  EXPECT_EQ(tok->decode(std::vector<std::int32_t>{1, v.id("hello"), 2}), "hello");
  EXPECT_EQ(tok->decode(std::vector<std::int32_t>{1, v.id("hello"), 2}, true), text);
  EXPECT_TRUE(tok->is_end_of_generation(0)); // "<|endoftext|>" by its text
  EXPECT_TRUE(tok->is_end_of_generation(2)); // eos
  EXPECT_FALSE(tok->is_end_of_generation(1));
  EXPECT_FALSE(tok->is_end_of_generation(-5));
}

TEST(TinyVocab, AnyBytesRoundTripWhenEveryByteHasAToken) {
  tiny_vocab v;
  auto tok = load(v);
  ASSERT_TRUE(tok) << tok.error().to_string();
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    std::string s(rng() % 40, '\0');
    for (auto& c : s)
      c = static_cast<char>(rng() % 256);
    EXPECT_EQ(tok->decode(tok->encode(s, false)), s) << "case " << i;
  }
}

TEST(TinyVocab, BytesWithoutTokensAreDroppedOrReplaced) {
  tiny_vocab v;
  v.tokens[3 + 0x04] = "[no byte 4]";  // a valid character without a token: dropped
  v.tokens[3 + 0xFF] = "[no byte ff]"; // an ill-formed byte without a token: U+FFFD
  auto tok = load(v);
  ASSERT_TRUE(tok) << tok.error().to_string();
  EXPECT_EQ(tok->decode(tok->encode("a\x04z", false)), "az");
  EXPECT_EQ(tok->decode(tok->encode("a\xFFz", false)), "a\xEF\xBF\xBDz");
  EXPECT_EQ(tok->decode(tok->encode("a\x80z", false)), "a\x80z"); // has a token: kept
}

// --- malformed metadata ---------------------------------------------------------------------

void expect_error(const tiny_vocab& v, errc code, const std::string& needle) {
  auto tok = load(v);
  ASSERT_FALSE(tok) << "loaded a tokenizer that should have been rejected";
  EXPECT_EQ(tok.error().code, code) << tok.error().to_string();
  EXPECT_NE(tok.error().message.find(needle), std::string::npos) << tok.error().to_string();
}

TEST(TinyVocabMalformed, MissingTokens) {
  tiny_vocab v;
  v.write_tokens = false;
  expect_error(v, errc::not_found, "tokenizer.ggml.tokens");
}

TEST(TinyVocabMalformed, EmptyTokens) {
  tiny_vocab v;
  v.tokens.clear();
  v.types.clear();
  expect_error(v, errc::corrupt_data, "empty");
}

TEST(TinyVocabMalformed, MissingMerges) {
  tiny_vocab v;
  v.write_merges = false;
  expect_error(v, errc::not_found, "merges");
}

TEST(TinyVocabMalformed, MissingModel) {
  tiny_vocab v;
  v.write_model = false;
  expect_error(v, errc::not_found, "tokenizer.ggml.model");
}

TEST(TinyVocabMalformed, UnsupportedModelIsNamed) {
  tiny_vocab v;
  v.model = "bert";
  expect_error(v, errc::invalid_argument, "'bert'");
  expect_error(v, errc::invalid_argument, "'llama'"); // among the supported ones
}

TEST(TinyVocabMalformed, UnknownPreTokenizerIsNamedWithTheSupportedOnes) {
  tiny_vocab v;
  v.pre = "klingon-bpe";
  expect_error(v, errc::invalid_argument, "'klingon-bpe'");
  expect_error(v, errc::invalid_argument, "smollm");
}

TEST(TinyVocabMalformed, TokenTypeCountDiffers) {
  tiny_vocab v;
  v.types.pop_back();
  expect_error(v, errc::corrupt_data, "token_type");
}

TEST(TinyVocabMalformed, BosOutOfRange) {
  tiny_vocab v;
  v.bos = 1'000'000;
  expect_error(v, errc::corrupt_data, "bos_token_id");
}

TEST(TinyVocabMalformed, EosOutOfRange) {
  tiny_vocab v;
  v.eos = static_cast<std::uint32_t>(v.tokens.size());
  expect_error(v, errc::corrupt_data, "out of range");
}

TEST(TinyVocabMalformed, MergeNamesUnknownToken) {
  tiny_vocab v;
  v.merges.push_back("he zz");
  expect_error(v, errc::corrupt_data, "'zz'");
}

TEST(TinyVocabMalformed, MergeResultIsNotAToken) {
  tiny_vocab v;
  v.merges.push_back("o o");
  expect_error(v, errc::corrupt_data, "'oo'");
}

TEST(TinyVocabMalformed, MergeWithoutSpace) {
  tiny_vocab v;
  v.merges.push_back("hello");
  expect_error(v, errc::corrupt_data, "no space");
}

TEST(TinyVocabMalformed, DuplicateToken) {
  tiny_vocab v;
  v.tokens.push_back("hello");
  v.types.push_back(1);
  expect_error(v, errc::corrupt_data, "twice");
}

TEST(TinyVocabMalformed, WrongValueTypes) {
  gguf::writer w;
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_uint32("tokenizer.ggml.pre", 7);
  const auto bytes = w.bytes();
  auto f = gguf::file::parse(bytes);
  ASSERT_TRUE(f);
  auto tok = tokenizer::from_gguf(*f);
  ASSERT_FALSE(tok);
  EXPECT_EQ(tok.error().code, errc::corrupt_data);

  gguf::writer w2;
  w2.add_string("tokenizer.ggml.model", "gpt2");
  w2.add_int32_array("tokenizer.ggml.tokens", {1, 2, 3});
  const auto bytes2 = w2.bytes();
  auto f2 = gguf::file::parse(bytes2);
  ASSERT_TRUE(f2);
  auto tok2 = tokenizer::from_gguf(*f2);
  ASSERT_FALSE(tok2);
  EXPECT_EQ(tok2.error().code, errc::corrupt_data);
}

TEST(TinyVocabMalformed, AddBosWithoutBos) {
  gguf::writer w;
  tiny_vocab v;
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string_array("tokenizer.ggml.tokens", v.tokens);
  w.add_string_array("tokenizer.ggml.merges", v.merges);
  w.add_bool("tokenizer.ggml.add_bos_token", true);
  const auto bytes = w.bytes();
  auto f = gguf::file::parse(bytes);
  ASSERT_TRUE(f);
  auto tok = tokenizer::from_gguf(*f);
  ASSERT_FALSE(tok);
  EXPECT_NE(tok.error().message.find("bos_token_id"), std::string::npos);
}

TEST(TinyVocab, NoTokenTypesMeansAllNormalAndNoPreMeansDefault) {
  gguf::writer w;
  tiny_vocab v;
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string_array("tokenizer.ggml.tokens", v.tokens);
  w.add_string_array("tokenizer.ggml.merges", v.merges);
  const auto bytes = w.bytes();
  auto f = gguf::file::parse(bytes);
  ASSERT_TRUE(f);
  auto tok = tokenizer::from_gguf(*f);
  ASSERT_TRUE(tok) << tok.error().to_string();
  EXPECT_EQ(tok->pre_tokenizer_name(), "default");
  EXPECT_EQ(tok->kind(1), token_kind::normal);
  EXPECT_EQ(tok->bos(), std::nullopt);
  // "<|endoftext|>" is end-of-generation by its text, which also makes it a control token.
  EXPECT_EQ(tok->kind(0), token_kind::control);
  EXPECT_TRUE(tok->is_end_of_generation(0));
  EXPECT_EQ(tok->decode(tok->encode("hello 123 world!", false)), "hello 123 world!");
}

TEST(TinyVocabMalformed, RandomMetadataNeverCrashes) {
  // Random token texts (ill-formed UTF-8 included), types, merges and ids: loading either fails
  // with an error or gives a tokenizer that encodes and decodes anything.
  std::mt19937 rng(42);
  const auto random_bytes = [&](std::size_t max_len) {
    std::string s(1 + rng() % max_len, '\0');
    for (auto& c : s)
      c = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : 'a' + rng() % 4);
    return s;
  };
  int loaded = 0;
  for (int round = 0; round < 200; ++round) {
    tiny_vocab v;
    if (rng() % 2 != 0) { // drop some byte tokens
      for (int k = 0; k < 20; ++k)
        v.tokens[3 + rng() % 256] = "<gone " + std::to_string(k) + ">";
    }
    for (int k = 0; k < 30; ++k) {
      v.tokens.push_back(std::to_string(k) + random_bytes(6));
      v.types.push_back(static_cast<std::int32_t>(rng() % 9) - 1);
    }
    for (int k = 0; k < 30; ++k) {
      const std::string a = v.tokens[3 + rng() % (v.tokens.size() - 3)];
      const std::string b = v.tokens[3 + rng() % (v.tokens.size() - 3)];
      if (a.find(' ') != std::string::npos || b.empty())
        continue;
      v.merges.push_back(a + " " + b);
      if (v.id(a + b) < 0) {
        v.tokens.push_back(a + b);
        v.types.push_back(1);
      }
    }
    if (rng() % 8 == 0)
      v.merges.push_back(random_bytes(5)); // most likely names no token
    v.bos = static_cast<std::uint32_t>(rng() % (v.tokens.size() + 3));
    auto tok = load(v);
    if (!tok)
      continue;
    ++loaded;
    for (int k = 0; k < 20; ++k) {
      const std::string text = random_bytes(30) + "<|im_start|>" + random_bytes(10);
      const auto got = tok->encode(text, k % 2 == 0);
      for (auto id : got)
        ASSERT_LT(static_cast<std::size_t>(id), tok->num_tokens());
      (void)tok->decode(got, k % 3 == 0);
    }
  }
  std::printf("[ info ] %d of 200 random vocabularies loaded\n", loaded);
}

} // namespace
} // namespace aeg::models
